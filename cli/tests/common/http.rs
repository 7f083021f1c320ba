//! Plain HTTP/1.1 requests to the coordinator's HTTP listener.

/// `GET path` naming the address as its host; the status line and body.
pub fn http_get(address: &str, path: &str) -> (String, String) {
    http_get_with(address, path, &[&format!("Host: {address}")])
}

/// `GET path` with these header lines; the status line and body.
pub fn http_get_with(address: &str, path: &str, headers: &[&str]) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let headers: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}
