"""pylibmc's side of the cross-language tests in tests/pylibmc.rs.

Run with Debian's interpreter (`/usr/bin/python3`, which has python3-pylibmc). Reads one JSON
document on stdin:

    {"jobs": [{"servers": ["127.0.0.1:PORT[:WEIGHT]", ...],
               "binary": false,
               "behaviors": {...},          # passed to pylibmc.Client
               "later_behaviors": {...},    # then set with set_behaviors (optional)
               "commands": [COMMAND, ...]}, ...]}

and prints {"results": [[RESULT, ...], ...]}: one list per job, one result per command. A command
that raises gives {"error": "ExceptionType: message"} instead of stopping the run.

Keys are "key" (a str, encoded to UTF-8 by pylibmc) or "key_hex" (bytes). Values travel typed, so
nothing is lost on the way:

    {"type": "bytes", "hex": "..."}       bytes ("repeat": N for that many copies, in commands)
    {"type": "str", "hex": "..."}         str, as the hex of its UTF-8 (also "repeat")
    {"type": "int", "dec": "-12"}         int of any size
    {"type": "bool", "value": true}
    {"type": "none"}
    {"type": "literal", "expr": "..."}    any Python literal (ast.literal_eval): dicts, tuples...
    {"type": "pickle", "hex": "..."}      only in results: the object stored under pickle flags,
                                          with "repr" and the hex of pickle.dumps(obj, -1)
    {"type": "miss"}                      only in results

Commands:

    {"op": "set", KEY, "value": V, "time": 0, "min_compress_len": 0, "compress_level": -1}
        -> {"ok": bool, "pickle_hex": "..." (for values pylibmc pickles)}
    {"op": "get", KEY, "expect": V (optional), "brief": false}
        -> {"value": V, "equal": bool (when "expect" was given; same value and type)}
        with "brief", a bytes or str value comes back as its type and "len" only
    {"op": "incr" | "decr", KEY, "delta": 1} -> {"dec": "11"}
    {"op": "set_keys", "prefix_hex": "...", "count": N}
        stores prefix + str(i) for i in range(N), each with value str(i) (text), in one set_multi
        -> {"failed": N, "servers": [mc.hash(key) for each key]}
    {"op": "get_keys", "prefix_hex": "...", "count": N}
        -> {"missing": [i, ...], "wrong": [i, ...], "servers": [mc.hash(key) for each key]}
    {"op": "behaviors"} -> {"behaviors": mc.get_behaviors()} (the ones that affect placement)
"""

import ast
import json
import pickle
import sys
import traceback

import pylibmc

MISS = object()


def decode_value(spec):
    kind = spec["type"]
    if kind == "bytes":
        return bytes.fromhex(spec["hex"]) * spec.get("repeat", 1)
    if kind == "str":
        return bytes.fromhex(spec["hex"]).decode("utf-8") * spec.get("repeat", 1)
    if kind == "int":
        return int(spec["dec"])
    if kind == "bool":
        return bool(spec["value"])
    if kind == "none":
        return None
    if kind == "literal":
        return ast.literal_eval(spec["expr"])
    raise ValueError("unknown value type %r" % kind)


def encode_value(value):
    if value is MISS:
        return {"type": "miss"}
    if isinstance(value, bool):
        return {"type": "bool", "value": value}
    if isinstance(value, bytes):
        return {"type": "bytes", "hex": value.hex()}
    if isinstance(value, str):
        return {"type": "str", "hex": value.encode("utf-8").hex()}
    if isinstance(value, int):
        return {"type": "int", "dec": str(value)}
    if value is None:
        return {"type": "none"}
    return {
        "type": "pickle",
        "python_type": type(value).__name__,
        "repr": repr(value),
        "hex": pickle.dumps(value, -1).hex(),
    }


def key_of(command):
    if "key" in command:
        return command["key"]
    return bytes.fromhex(command["key_hex"])


def is_pickled(value):
    # pylibmc's native serialisation: bytes, str, bool and int are stored as they are.
    return not isinstance(value, (bytes, str, int))


def run(mc, command):
    op = command["op"]
    if op == "set":
        value = decode_value(command["value"])
        ok = mc.set(
            key_of(command),
            value,
            command.get("time", 0),
            command.get("min_compress_len", 0),
            command.get("compress_level", -1),
        )
        result = {"ok": ok}
        if is_pickled(value):
            result["pickle_hex"] = pickle.dumps(value, -1).hex()
        return result
    if op == "get":
        value = mc.get(key_of(command), MISS)
        result = {"value": encode_value(value)}
        if command.get("brief") and isinstance(value, (bytes, str)):
            result["value"] = {"type": result["value"]["type"], "len": len(value)}
        if "expect" in command:
            expected = decode_value(command["expect"])
            result["equal"] = type(value) is type(expected) and value == expected
        return result
    if op in ("incr", "decr"):
        method = mc.incr if op == "incr" else mc.decr
        return {"dec": str(method(key_of(command), command.get("delta", 1)))}
    if op == "set_keys":
        prefix = bytes.fromhex(command["prefix_hex"])
        keys = [prefix + str(i).encode() for i in range(command["count"])]
        failed = mc.set_multi({k: str(i) for i, k in enumerate(keys)})
        return {"failed": len(failed), "servers": [mc.hash(k) for k in keys]}
    if op == "get_keys":
        prefix = bytes.fromhex(command["prefix_hex"])
        keys = [prefix + str(i).encode() for i in range(command["count"])]
        found = mc.get_multi(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        wrong = [i for i, k in enumerate(keys) if k in found and found[k] != str(i)]
        return {
            "missing": missing,
            "wrong": wrong,
            "servers": [mc.hash(k) for k in keys],
        }
    if op == "behaviors":
        behaviors = mc.get_behaviors()
        names = ("hash", "distribution", "ketama", "ketama_weighted", "ketama_hash")
        return {"behaviors": {name: behaviors[name] for name in names}}
    raise ValueError("unknown op %r" % op)


def run_job(job):
    mc = pylibmc.Client(
        job["servers"], binary=job.get("binary", False), behaviors=job.get("behaviors") or None
    )
    if job.get("later_behaviors"):
        mc.set_behaviors(job["later_behaviors"])
    results = []
    for command in job["commands"]:
        try:
            results.append(run(mc, command))
        except Exception as err:  # reported to the Rust side, which fails the test
            results.append({"error": "%s: %s" % (type(err).__name__, err),
                            "traceback": traceback.format_exc()})
    mc.disconnect_all()
    return results


def main():
    request = json.load(sys.stdin)
    results = [run_job(job) for job in request["jobs"]]
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
