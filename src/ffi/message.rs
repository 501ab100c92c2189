//! What libmemcached's error messages say, read as text: the message without its decorations,
//! and another service answering on a server's port.

/// libmemcached's message without the handle address in front and the source location behind:
/// `(0x55d0...) CONNECTION FAILURE, host: ... -> src/get.cc:233` becomes
/// `CONNECTION FAILURE, host: ...`.
pub(crate) fn clean_message(message: &str) -> String {
    let message = match message.strip_prefix("(0x") {
        Some(rest) => rest.split_once(") ").map_or(message, |(_, m)| m),
        None => message,
    };
    let message = message.rsplit_once(" -> ").map_or(message, |(m, _)| m);
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The service that sent a reply libmemcached could not read, recognised by its first line
/// (which libmemcached puts in its message, in ASCII): another service on the port.
pub(super) fn foreign_service(message: &str) -> Option<&'static str> {
    let reply = message.strip_prefix("UNKNOWN READ FAILURE, ")?;
    let services: [(&[&str], &str); 3] = [
        (&["HTTP/"], "HTTP"),
        (&["SSH-"], "SSH"),
        (
            &["-ERR", "-NOAUTH", "-WRONGTYPE", "$-1", "+OK", "+PONG"],
            "the Redis protocol",
        ),
    ];
    services
        .iter()
        .find(|(starts, _)| starts.iter().any(|s| reply.starts_with(s)))
        .map(|(_, service)| *service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_the_handle_address_and_the_source_location() {
        let raw = "(0x55d0c0a0) CONNECTION FAILURE,  host: 127.0.0.1:22199 -> ./src/libmemcached/get.cc:233";
        assert_eq!(
            clean_message(raw),
            "CONNECTION FAILURE, host: 127.0.0.1:22199"
        );
        assert_eq!(clean_message("NOT FOUND"), "NOT FOUND");
    }

    #[test]
    fn another_service_on_the_port_is_named() {
        let named = |m: &str| foreign_service(m);
        assert_eq!(
            named("UNKNOWN READ FAILURE, HTTP/1.1 400 Bad Request , host: 127.0.0.1:1"),
            Some("HTTP")
        );
        assert_eq!(
            named("UNKNOWN READ FAILURE, SSH-2.0-OpenSSH_9.2 , host: 127.0.0.1:1"),
            Some("SSH")
        );
        assert_eq!(
            named("UNKNOWN READ FAILURE, -ERR unknown command 'gets' , host: x:1"),
            Some("the Redis protocol")
        );
        assert_eq!(named("UNKNOWN READ FAILURE, host: 127.0.0.1:1"), None);
        assert_eq!(named("PROTOCOL ERROR, HTTP/1.1"), None);
    }
}
