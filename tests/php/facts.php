<?php
// The facts of php-memcached's format that src/php/mod.rs documents, read off the real
// extension. tests/php.rs runs it against a fresh memcached and checks every one.
//
//   php tests/php/facts.php HOST:PORT
//
// Prints JSON: the extension's settings (ini, option defaults, build constants), what
// OPT_LIBKETAMA_COMPATIBLE turns on, and the flags and bytes stored for each kind of value.
ini_set('display_errors', 'stderr');
error_reporting(E_ALL);
require __DIR__ . '/raw_get.php';

[$host, $port] = explode(':', $argv[1]);


function options(Memcached $m, array $names) {
    $out = [];
    foreach ($names as $name) {
        $out[$name] = $m->getOption(constant("Memcached::$name"));
    }
    return $out;
}

$facts = ['version' => phpversion('memcached')];
foreach (['serializer', 'compression_type', 'compression_threshold', 'compression_factor'] as $ini) {
    $facts['ini'][$ini] = ini_get("memcached.$ini");
}
$constants = (new ReflectionClass('Memcached'))->getConstants();
$facts['constants'] = array_filter(
    $constants,
    fn ($name) => preg_match('/^(HAVE_|COMPRESSION_|SERIALIZER_)/', $name),
    ARRAY_FILTER_USE_KEY
);

$names = ['OPT_HASH', 'OPT_DISTRIBUTION', 'OPT_LIBKETAMA_COMPATIBLE', 'OPT_COMPRESSION',
          'OPT_COMPRESSION_TYPE', 'OPT_SERIALIZER', 'OPT_BINARY_PROTOCOL', 'OPT_USER_FLAGS'];
$facts['defaults'] = options(new Memcached(), $names);
$ketama = new Memcached();
$ketama->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
$facts['libketama'] = options($ketama, ['OPT_HASH', 'OPT_DISTRIBUTION', 'OPT_LIBKETAMA_HASH']);

$m = new Memcached();
$m->addServer($host, (int)$port);
$values = [
    'string' => 'hello', 'empty' => '', 'long' => -42, 'max' => PHP_INT_MAX,
    'double' => 1.5, 'tenth' => 0.1, 'third' => 1 / 3, 'negzero' => -0.0, 'hundred' => 100.0,
    'e15' => 1e15, 'e-7' => 1e-7, 'e100' => 1e100, 'inf' => INF, 'ninf' => -INF, 'nan' => NAN,
    'true' => true, 'false' => false, 'null' => null, 'array' => [1, 'a' => 2.5],
    'below_threshold' => str_repeat('a', 1999), 'threshold' => str_repeat('a', 2000),
    'big_long' => 1234567890123456789,
];
foreach ($values as $key => $value) {
    $m->set("fact-$key", $value);
}
$m->setOption(Memcached::OPT_COMPRESSION_TYPE, Memcached::COMPRESSION_ZLIB);
$m->set('fact-zlib', str_repeat('a', 2000));
// 7-bit noise: zlib makes it smaller, but not to 1/1.3 of its size, so it is stored as it is.
mt_srand(7);
$poor = '';
for ($i = 0; $i < 3000; $i++) {
    $poor .= chr(mt_rand(0, 127));
}
$m->set('fact-poor', $poor);
$m->setOption(Memcached::OPT_USER_FLAGS, 7);
$m->set('fact-user', 'x');
foreach (array_merge(array_keys($values), ['zlib', 'poor', 'user']) as $key) {
    [$flags, $data] = raw_get($host, $port, "fact-$key");
    $facts['stored'][$key] = ['flags' => $flags, 'hex' => bin2hex($data)];
}
foreach (['igbinary' => 'SERIALIZER_IGBINARY', 'json' => 'SERIALIZER_JSON', 'msgpack' => 'SERIALIZER_MSGPACK'] as $name => $serializer) {
    $s = new Memcached();
    $s->addServer($host, (int)$port);
    $s->setOption(Memcached::OPT_SERIALIZER, constant("Memcached::$serializer"));
    $s->set("fact-$name", [1, 'a' => 2.5]);
    [$flags, $data] = raw_get($host, $port, "fact-$name");
    $facts['stored'][$name] = ['flags' => $flags, 'hex' => bin2hex($data)];
}
echo json_encode($facts, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION);
