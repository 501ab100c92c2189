//! Printing results as text or as JSON (one document per command).
//!
//! Whatever a server sends is escaped before it is written, so that nothing it holds acts on a
//! terminal or forges a line in a pipe ([`escape`]). A single value is the exception on a pipe
//! or in a file: `memc get k > file` writes the bytes as stored; the values of several keys are
//! escaped, a line per key.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use libmemcached::{Address, ServerStats, Value};
use serde_json::{Map, Value as Json, json};

pub struct Output<'a> {
    out: &'a mut dyn Write,
    json: bool,
    in_shell: bool,
    /// Bytes that are not text are shown as hex on a terminal, and written as they are to a
    /// pipe or file.
    terminal: bool,
}

impl<'a> Output<'a> {
    pub fn new(out: &'a mut dyn Write, json: bool, in_shell: bool) -> Self {
        Output {
            out,
            json,
            in_shell,
            terminal: io::stdout().is_terminal(),
        }
    }

    /// The stream, for commands that print their own lines.
    pub fn raw(&mut self) -> &mut dyn Write {
        &mut *self.out
    }

    fn json(&mut self, document: &Json) -> io::Result<()> {
        write_json(self.out, document)
    }

    pub fn value(&mut self, key: &str, value: &Value) -> io::Result<()> {
        if self.json {
            return self.json(&json!({ key: json_value(value) }));
        }
        print_value(self.out, value, self.terminal)
    }

    /// The values found for several keys, in the order asked for.
    pub fn values(&mut self, found: &[(&str, Value)]) -> io::Result<()> {
        if self.json {
            let map: Map<String, Json> = found
                .iter()
                .map(|(key, value)| (key.to_string(), json_value(value)))
                .collect();
            return self.json(&Json::Object(map));
        }
        // A line per key: the values escaped as keys are, so that one cannot forge another.
        for (key, value) in found {
            write!(self.out, "{}\t", escape(key.as_bytes(), Field))?;
            match value {
                Value::Text(text) => writeln!(self.out, "{}", escape(text.as_bytes(), Field))?,
                Value::Bytes(data) | Value::Pickle(data) | Value::Other { data, .. } => {
                    writeln!(self.out, "{}", escape(data, Field))?
                }
                other => print_value(self.out, other, self.terminal)?,
            }
        }
        Ok(())
    }

    pub fn value_with_cas(&mut self, key: &str, value: &Value, cas: u64) -> io::Result<()> {
        if self.json {
            return self.json(&json!({ key: { "value": json_value(value), "cas": cas } }));
        }
        print_value(self.out, value, self.terminal)?;
        writeln!(self.out, "cas {cas}")
    }

    /// A miss prints nothing outside the shell, so `$(memc get k)` is empty; the exit code
    /// says it.
    pub fn miss(&mut self) -> io::Result<()> {
        if self.json {
            self.json(&json!({}))
        } else if self.in_shell {
            writeln!(self.out, "NOT_FOUND")
        } else {
            Ok(())
        }
    }

    pub fn stored(&mut self, stored: bool) -> io::Result<()> {
        match (self.json, stored) {
            (true, _) => self.json(&json!({ "stored": stored })),
            (false, true) => writeln!(self.out, "STORED"),
            (false, false) => writeln!(self.out, "NOT_STORED"),
        }
    }

    /// `deleted`/`DELETED` and the like: whether the key was there to act on.
    pub fn done(&mut self, name: &str, word: &str, done: bool) -> io::Result<()> {
        match (self.json, done) {
            (true, _) => self.json(&json!({ name: done })),
            (false, true) => writeln!(self.out, "{word}"),
            (false, false) => writeln!(self.out, "NOT_FOUND"),
        }
    }

    /// A counter's new value, or `None` for a missing counter.
    pub fn counter(&mut self, value: Option<u64>) -> io::Result<()> {
        match (self.json, value) {
            (true, _) => self.json(&json!({ "value": value })),
            (false, Some(n)) => writeln!(self.out, "{n}"),
            (false, None) => writeln!(self.out, "NOT_FOUND"),
        }
    }

    pub fn flushed(&mut self) -> io::Result<()> {
        match self.json {
            true => self.json(&json!({ "flushed": true })),
            false => writeln!(self.out, "OK"),
        }
    }

    pub fn stats(&mut self, stats: &[ServerStats]) -> io::Result<()> {
        if self.json {
            let servers: Map<String, Json> = stats
                .iter()
                .map(|s| {
                    let fields: Map<String, Json> =
                        s.iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
                    (s.server().to_string(), Json::Object(fields))
                })
                .collect();
            return self.json(&Json::Object(servers));
        }
        for s in stats {
            writeln!(self.out, "{}", s.server())?;
            for (k, v) in s.iter() {
                let (k, v) = (escape(k.as_bytes(), Field), escape(v.as_bytes(), Field));
                writeln!(self.out, "  {k} {v}")?;
            }
        }
        Ok(())
    }

    pub fn versions(&mut self, versions: &[(Address, String)]) -> io::Result<()> {
        if self.json {
            let map: Map<String, Json> = versions
                .iter()
                .map(|(server, version)| (server.to_string(), version.as_str().into()))
                .collect();
            return self.json(&Json::Object(map));
        }
        for (server, version) in versions {
            writeln!(self.out, "{server} {}", escape(version.as_bytes(), Field))?;
        }
        Ok(())
    }

    pub fn server_for(&mut self, key: &str, server: &Address) -> io::Result<()> {
        match self.json {
            true => self.json(&json!({ "key": key, "server": server.to_string() })),
            false => writeln!(self.out, "{server}"),
        }
    }

    /// Ping's answers, printed as they come in text and gathered for JSON.
    pub fn ping(self) -> Ping<'a> {
        Ping {
            output: self,
            servers: Map::new(),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

pub struct Ping<'a> {
    output: Output<'a>,
    servers: Map<String, Json>,
}

impl Ping<'_> {
    pub fn alive(&mut self, spec: &str, version: &str, ms: f64) -> io::Result<()> {
        if self.output.json {
            // Microseconds are as fine as the text shows.
            let ms = (ms * 1000.0).round() / 1000.0;
            let answer = json!({ "alive": true, "version": version, "ms": ms });
            self.servers.insert(spec.to_owned(), answer);
            return Ok(());
        }
        let version = escape(version.as_bytes(), Field);
        writeln!(self.output.out, "{spec} alive {version} ({ms:.3} ms)")
    }

    pub fn down(&mut self, spec: &str, error: &str) -> io::Result<()> {
        if self.output.json {
            let answer = json!({ "alive": false, "error": error });
            self.servers.insert(spec.to_owned(), answer);
            return Ok(());
        }
        writeln!(self.output.out, "{spec} down")
    }

    pub fn finish(self) -> io::Result<()> {
        let Ping {
            mut output,
            servers,
        } = self;
        if output.json {
            output.json(&Json::Object(servers))?;
        }
        output.flush()
    }
}

fn print_value(out: &mut dyn Write, value: &Value, terminal: bool) -> io::Result<()> {
    match value {
        // A terminal would act on control characters (escape sequences): show them escaped.
        Value::Text(text) if terminal => out.write_all(escape(text.as_bytes(), Text).as_bytes())?,
        Value::Text(text) => out.write_all(text.as_bytes())?,
        Value::Int(n) => write!(out, "{n}")?,
        Value::BigInt(digits) => out.write_all(digits.as_bytes())?,
        Value::Bytes(data) | Value::Pickle(data) | Value::Other { data, .. }
            if terminal && !is_printable(data) =>
        {
            let shown = &data[..data.len().min(32)];
            let more = if data.len() > shown.len() { "..." } else { "" };
            write!(
                out,
                "({} bytes that are not text, in hex: {}{more}; redirect to a file for the bytes)",
                data.len(),
                hex(shown)
            )?
        }
        Value::Bytes(data) | Value::Pickle(data) | Value::Other { data, .. } => {
            out.write_all(data)?
        }
        other => write!(out, "{other:?}")?,
    }
    out.write_all(b"\n")
}

/// Text a terminal shows as it is: UTF-8 without control characters but tab and line feed.
fn is_printable(data: &[u8]) -> bool {
    matches!(escape(data, Text), Cow::Borrowed(_))
}

/// How [`escape`] writes what a server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// A field of a line (a key, a stat, an error): every control character is escaped, and so
    /// is `\`, so the line is one record, tabs separate fields, and the text can be read back.
    Field,
    /// A value shown on a terminal: tab and line feed stay, as does `\`; the other control
    /// characters are escaped.
    Text,
}
pub use Escape::{Field, Text};

/// `data` with nothing a terminal acts on: `\t`, `\n`, `\r` and `\\` (in [`Field`]s), other
/// ASCII controls and DEL as `\x1b`, C1 controls (U+0080 to U+009F) as `\u{9b}`, and bytes that
/// are not UTF-8 as `\xff`. Text with nothing to escape comes back as it is.
pub fn escape(data: &[u8], mode: Escape) -> Cow<'_, str> {
    let keep = |c: char| match mode {
        Field => !c.is_control() && c != '\\',
        Text => !c.is_control() || matches!(c, '\t' | '\n'),
    };
    if let Ok(text) = std::str::from_utf8(data) {
        if text.chars().all(keep) {
            return Cow::Borrowed(text);
        }
    }
    let mut shown = String::with_capacity(data.len() + 16);
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                c if keep(c) => shown.push(c),
                '\\' => shown.push_str("\\\\"),
                '\t' => shown.push_str("\\t"),
                '\n' => shown.push_str("\\n"),
                '\r' => shown.push_str("\\r"),
                c if c.is_ascii() => {
                    let _ = write!(shown, "\\x{:02x}", u32::from(c));
                }
                c => {
                    let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
                }
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(shown, "\\x{byte:02x}");
        }
    }
    Cow::Owned(shown)
}

/// One JSON document on a line. serde_json escapes the C0 controls but writes DEL and the C1
/// controls as they are, which a terminal acts on: they go as `\u007f` to `\u009f` here (they
/// can only occur inside strings, so the document means the same).
pub fn write_json(out: &mut dyn Write, document: &Json) -> io::Result<()> {
    let text = document.to_string();
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{7f}'..='\u{9f}' => {
                let _ = write!(shown, "\\u{:04x}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    writeln!(out, "{shown}")
}

/// A value in JSON: text and numbers as themselves, other bytes in hex with their flags.
fn json_value(value: &Value) -> Json {
    match value {
        Value::Text(text) => text.as_str().into(),
        // serde_json's numbers stop at 64 bits; digits beyond that go as a string rather than
        // be rounded.
        Value::Int(n) => match (i64::try_from(*n), u64::try_from(*n)) {
            (Ok(n), _) => n.into(),
            (_, Ok(n)) => n.into(),
            _ => n.to_string().into(),
        },
        Value::BigInt(digits) => digits.as_str().into(),
        Value::Bytes(data) => match std::str::from_utf8(data) {
            Ok(text) => text.into(),
            Err(_) => json!({ "flags": 0, "hex": hex(data) }),
        },
        Value::Pickle(data) => json!({ "flags": 1, "pickle_hex": hex(data) }),
        Value::Other { flags, data } => json!({ "flags": flags, "hex": hex(data) }),
        other => format!("{other:?}").into(),
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(json: bool, print: impl FnOnce(&mut Output) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        print(&mut Output::new(&mut out, json, false)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_keeps_the_order_of_the_keys_and_escapes_strings() {
        let found = [
            ("z", Value::Text("a\"b\\c\n\u{1}é".into())),
            ("a", Value::Int(-42)),
            ("m", Value::Bytes(vec![0xff])),
        ];
        assert_eq!(
            printed(true, |o| o.values(&found)),
            "{\"z\":\"a\\\"b\\\\c\\n\\u0001é\",\"a\":-42,\"m\":{\"flags\":0,\"hex\":\"ff\"}}\n"
        );
    }

    #[test]
    fn control_characters_reach_a_terminal_escaped_and_a_pipe_as_they_are() {
        let text = Value::Text("red \u{1b}[31mé\tok\u{7}".into());
        let shown = |terminal| {
            let mut out = Vec::new();
            print_value(&mut out, &text, terminal).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(shown(true), "red \\x1b[31mé\tok\\x07\n");
        assert_eq!(shown(false), "red \u{1b}[31mé\tok\u{7}\n");
    }

    #[test]
    fn fields_escape_every_control_character_and_backslash() {
        let raw = b"a\\b\tc\nd\re\x1b[2J\x07\x7f\xc2\x9b\xff\xc3\xa9";
        let field = escape(raw, Field);
        assert_eq!(field, r"a\\b\tc\nd\re\x1b[2J\x07\x7f\u{9b}\xffé");
        assert_eq!(
            escape(raw, Text),
            "a\\b\tc\nd\\re\\x1b[2J\\x07\\x7f\\u{9b}\\xffé"
        );
        assert!(matches!(
            escape("plain é".as_bytes(), Field),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_escapes_del_and_the_c1_controls() {
        let doc = json!({ "k\u{9b}": "a\u{7f}b\u{85}\u{a0}\u{1b}" });
        let mut out = Vec::new();
        write_json(&mut out, &doc).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\"k\\u009b\":\"a\\u007fb\\u0085\u{a0}\\u001b\"}\n");
        let back: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn numbers_beyond_64_bits_stay_exact() {
        let big = i128::from(u64::MAX) + 1;
        assert_eq!(
            printed(true, |o| o.value("n", &Value::Int(big))),
            format!("{{\"n\":\"{big}\"}}\n")
        );
        assert_eq!(
            printed(true, |o| o.value("n", &Value::Int(u64::MAX.into()))),
            format!("{{\"n\":{}}}\n", u64::MAX)
        );
        assert_eq!(
            printed(false, |o| o.value("n", &Value::Int(big))),
            format!("{big}\n")
        );
    }
}
