<?php
// raw_get(): a value as stored on the server, read with a plain ASCII `get`: its flags and
// bytes before php-memcached decodes them. Shared by the scripts in this folder.

function raw_get($host, $port, $key) {
    $s = fsockopen($host, (int)$port);
    fwrite($s, "get $key\r\n");
    if (!preg_match('/^VALUE \S+ (\d+) (\d+)\r\n$/', fgets($s), $m)) {
        throw new Exception("$key: not stored");
    }
    $data = '';
    while (strlen($data) < (int)$m[2]) {
        $data .= fread($s, (int)$m[2] - strlen($data));
    }
    fclose($s);
    return [(int)$m[1], $data];
}
