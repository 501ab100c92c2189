<?php
// PHP's side of the cross-language tests in tests/php.rs: php-memcached (Debian's php-memcached,
// run by the `php` CLI). Reads one JSON document on stdin:
//
//     {"jobs": [{"servers": ["127.0.0.1:PORT", ...],
//                "options": {"OPT_NAME": value or "CONSTANT_NAME", ...},
//                "commands": [COMMAND, ...]}, ...]}
//
// and prints {"results": [[RESULT, ...], ...]}: one list per job, one result per command. A
// command that fails gives {"error": "...", "code": N} instead of stopping the run.
//
// Values travel typed:
//
//     {"type": "string", "hex": "...", "repeat": N}   a string (repeated N times)
//     {"type": "int", "value": -12}
//     {"type": "float", "text": "1.5"}                also "INF", "-INF", "NAN"
//     {"type": "bool", "value": true}
//     {"type": "null"}
//     {"type": "expr", "php": "['a' => 1]"}            any PHP expression
//
// and come back described: {"type": gettype(), "hex" (strings), "value" (ints, bools),
// "export" (var_export of floats, arrays and objects), "json" (json_encode, arrays and objects)}.
//
// Commands:
//
//     {"op": "set", "key": K, "value": V, "options": {...}}   options for this command only
//         -> {"ok": true}
//     {"op": "get", "key": K} -> {"value": DESCRIBED, "user_flags": N} or {"miss": true}
//     {"op": "servers", "prefix": P, "count": N} -> {"servers": ["host:port" of P.i, ...]}
//     {"op": "options", "names": ["OPT_HASH", ...]} -> {"options": {name: value}}
//     {"op": "eval", "php": CODE} -> {"result": what CODE returns}: PHP statements run with the
//         job's client as $m (for what the other commands cannot say, such as a float's bits)
ini_set('display_errors', 'stderr');
error_reporting(E_ALL);

function option_value($value) {
    return is_string($value) && defined("Memcached::$value") ? constant("Memcached::$value") : $value;
}

function set_options(Memcached $m, array $options) {
    $before = [];
    foreach ($options as $name => $value) {
        $option = constant("Memcached::$name");
        $before[$name] = $m->getOption($option);
        if (!$m->setOption($option, option_value($value))) {
            throw new Exception("setOption($name): " . $m->getResultMessage());
        }
    }
    return $before;
}

function value_of(array $spec) {
    switch ($spec['type']) {
        case 'string': return str_repeat(hex2bin($spec['hex']), $spec['repeat'] ?? 1);
        case 'int': return (int)$spec['value'];
        case 'float':
            return ['INF' => INF, '-INF' => -INF, 'NAN' => NAN][$spec['text']] ?? (float)$spec['text'];
        case 'bool': return (bool)$spec['value'];
        case 'null': return null;
        case 'expr': return eval('return ' . $spec['php'] . ';');
    }
    throw new Exception("unknown value type {$spec['type']}");
}

function describe($value) {
    $out = ['type' => gettype($value)];
    if (is_string($value)) {
        $out['hex'] = bin2hex($value);
    } elseif (is_int($value) || is_bool($value)) {
        $out['value'] = $value;
    } else {
        $out['export'] = var_export($value, true);
        if (is_array($value) || is_object($value)) {
            $out['json'] = json_encode($value, JSON_INVALID_UTF8_SUBSTITUTE | JSON_PRESERVE_ZERO_FRACTION);
        }
    }
    return $out;
}

// A value as an exact typed tree, for `eval` commands: ["null"], ["bool", B], ["int", N],
// ["float", hex of pack('E')], ["string", hex], ["array", [[KEY, TREE], ...]] with KEY ["i", N] or
// ["s", hex], and ["object", class, [[hex of the name, TREE], ...]] with the names (array) gives.
function typed($v) {
    if (is_null($v)) return ['null'];
    if (is_bool($v)) return ['bool', $v];
    if (is_int($v)) return ['int', $v];
    if (is_float($v)) return ['float', bin2hex(pack('E', $v))];
    if (is_string($v)) return ['string', bin2hex($v)];
    $entries = [];
    foreach ((array)$v as $k => $x) {
        if (is_array($v)) {
            $entries[] = [is_int($k) ? ['i', $k] : ['s', bin2hex($k)], typed($x)];
        } else {
            $entries[] = [bin2hex((string)$k), typed($x)];
        }
    }
    return is_array($v) ? ['array', $entries] : ['object', get_class($v), $entries];
}

function run(Memcached $m, array $c) {
    switch ($c['op']) {
        case 'set':
            $before = set_options($m, $c['options'] ?? []);
            $ok = $m->set($c['key'], value_of($c['value']));
            $failure = $ok ? null : ['error' => $m->getResultMessage(), 'code' => $m->getResultCode()];
            set_options($m, $before);
            return $failure ?? ['ok' => true];
        case 'get':
            $got = $m->get($c['key'], null, Memcached::GET_EXTENDED);
            $code = $m->getResultCode();
            if ($code === Memcached::RES_NOTFOUND) {
                return ['miss' => true];
            }
            if ($code !== Memcached::RES_SUCCESS) {
                return ['error' => $m->getResultMessage(), 'code' => $code];
            }
            return ['value' => describe($got['value']), 'user_flags' => $got['flags']];
        case 'servers':
            $servers = [];
            for ($i = 0; $i < $c['count']; $i++) {
                $s = $m->getServerByKey($c['prefix'] . $i);
                $servers[] = "{$s['host']}:{$s['port']}";
            }
            return ['servers' => $servers];
        case 'options':
            $options = [];
            foreach ($c['names'] as $name) {
                $options[$name] = $m->getOption(constant("Memcached::$name"));
            }
            return ['options' => $options];
        case 'eval':
            return ['result' => (function (Memcached $m) use ($c) { return eval($c['php']); })($m)];
    }
    throw new Exception("unknown op {$c['op']}");
}

$request = json_decode(file_get_contents('php://stdin'), true, 512, JSON_THROW_ON_ERROR);
$results = [];
foreach ($request['jobs'] as $job) {
    $m = new Memcached();
    set_options($m, $job['options'] ?? []);
    foreach ($job['servers'] as $server) {
        [$host, $port] = explode(':', $server);
        $m->addServer($host, (int)$port);
    }
    $out = [];
    foreach ($job['commands'] as $command) {
        try {
            $out[] = run($m, $command);
        } catch (Throwable $e) {
            $out[] = ['error' => get_class($e) . ': ' . $e->getMessage(), 'code' => -1];
        }
    }
    $results[] = $out;
}
echo json_encode(['results' => $results], JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION);
