//! Plain HTTP/1.1 requests to the coordinator's HTTP listener.

/// `GET path` naming the address as its host; the status line and body.
pub fn http_get(address: &str, path: &str) -> (String, String) {
    http_get_with(address, path, &[&format!("Host: {address}")])
}

/// `GET path` with these header lines; the status line and body.
pub fn http_get_with(address: &str, path: &str, headers: &[&str]) -> (String, String) {
    let (status, _, body) = http_request(address, "GET", path, headers, "");
    (status, body)
}

/// `METHOD path` with these header lines and `body`; the status line, the
/// response's header lines and its body.
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (String, Vec<String>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut head: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines().map(str::to_string);
    let status = lines.next().unwrap();
    (status, lines.collect(), body.to_string())
}
