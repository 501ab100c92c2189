<?php
// Writes the FastLZ fixtures of src/php/fastlz.rs's tests: two values php-memcached compresses
// with its default compression (FastLZ), as stored on the server (length prefix and block).
//
//   php tests/php/fastlz_fixtures.php HOST:PORT OUT_DIR
//
// level1.bin: 300 lines of text (below 64 KiB: FastLZ level 1).
// level2.bin: 70000 bytes repeating every 12288 (level 2, with matches past 8191 bytes).
// tests/php.rs runs it against a fresh memcached and checks the committed files are what PHP
// writes today.
ini_set('display_errors', 'stderr');
error_reporting(E_ALL);
require __DIR__ . '/raw_get.php';

[$server, $out] = [$argv[1], $argv[2]];
[$host, $port] = explode(':', $server);
$m = new Memcached();
$m->addServer($host, (int)$port);

$text = '';
for ($i = 0; $i < 300; $i++) {
    $text .= "line $i: the quick brown fox " . ($i * $i) . "\n";
}
$state = 12345;
$noise = '';
for ($i = 0; $i < 70000; $i++) {
    if ($i < 12288) {
        $state = ($state * 1103515245 + 12345) & 0xffffffff;
        $noise .= chr(($state >> 16) & 0xff);
    } else {
        $noise .= $noise[$i - 12288];
    }
}


foreach (['level1' => $text, 'level2' => $noise] as $name => $value) {
    if (!$m->set("fastlz-$name", $value)) {
        throw new Exception("set: " . $m->getResultMessage());
    }
    [$flags, $data] = raw_get($host, $port, "fastlz-$name");
    if ($flags !== 80) {
        throw new Exception("$name: flags $flags, not FastLZ's 80");
    }
    file_put_contents("$out/$name.bin", $data);
}
