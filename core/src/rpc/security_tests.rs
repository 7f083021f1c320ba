//! Tests of `core/src/rpc/security.rs`.
use super::*;

fn token(text: &str) -> Token {
    Token::parse(text).unwrap()
}

fn call(check: &TokenCheck, credential: &Credential) -> Result<(), Status> {
    let mut request = Request::new(());
    request = credential.clone().call(request)?;
    check.clone().call(request).map(|_| ())
}

#[test]
fn only_the_roles_token_is_admitted() {
    let client = token(&"c".repeat(40));
    let worker = token(&"w".repeat(40));
    let check = TokenCheck::new(Role::Client, Some(&client));
    assert!(call(&check, &Credential::new(Some(&client))).is_ok());
    for wrong in [
        Credential::new(Some(&worker)),
        Credential::new(None),
        Credential::new(Some(&token(&"c".repeat(41)))),
    ] {
        let status = call(&check, &wrong).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("client token"), "{status:?}");
    }
}

#[test]
fn without_a_token_every_call_is_admitted() {
    let check = TokenCheck::new(Role::Worker, None);
    assert!(call(&check, &Credential::new(None)).is_ok());
    assert!(call(&check, &Credential::new(Some(&token(&"x".repeat(32))))).is_ok());
}

#[test]
fn weak_or_unprintable_tokens_are_refused() {
    assert_eq!(Token::parse("short"), Err(Some(5)));
    assert_eq!(Token::parse(&format!("{} x", "a".repeat(40))), Err(None));
    assert!(Token::parse(&"a".repeat(MIN_TOKEN_BYTES)).is_ok());
    let random = Token::random().unwrap();
    assert_eq!(random.0.len(), 64);
    assert_ne!(random, Token::random().unwrap());
}

#[test]
fn token_files_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("  {}\n", "k".repeat(40))).unwrap();
    assert_eq!(Token::from_file(&path).unwrap(), token(&"k".repeat(40)));
    std::fs::write(&path, "abc\n").unwrap();
    let error = Token::from_file(&path).unwrap_err().to_string();
    assert!(
        error.contains("3 bytes") && error.contains("openssl rand"),
        "{error}"
    );
    let missing = Token::from_file(&dir.path().join("none")).unwrap_err();
    assert!(missing.to_string().contains("none"), "{missing}");
}

#[test]
fn tls_files_are_named_when_missing_or_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("node.crt");
    let key = dir.path().join("node.key");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMII\n").unwrap();
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMII\n").unwrap();
    let error = Tls::from_files(&cert, &key, &ca).unwrap_err().to_string();
    assert!(
        error.contains("--tls-ca") && error.contains("ca.pem"),
        "{error}"
    );
    std::fs::write(&ca, "not a certificate").unwrap();
    let error = Tls::from_files(&cert, &key, &ca).unwrap_err().to_string();
    assert!(error.contains("ca.pem is not a PEM"), "{error}");
    std::fs::write(&key, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let error = Tls::from_files(&cert, &key, &cert).unwrap_err().to_string();
    assert!(
        error.contains("node.key is not a PEM private key"),
        "{error}"
    );
}

#[tokio::test]
async fn the_url_scheme_must_agree_with_tls() {
    let plain = Connector::default();
    let error = plain.channel("https://127.0.0.1:7070").unwrap_err();
    assert!(error.to_string().contains("needs --tls-cert"), "{error}");
    assert!(plain.channel("http://127.0.0.1:7070").is_ok());
    let error = plain.channel("not a url").unwrap_err();
    assert!(matches!(error, ConnectError::Url { .. }), "{error}");
}

#[test]
fn only_loopback_may_go_without_authentication() {
    let public: SocketAddr = "0.0.0.0:7070".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:7070".parse().unwrap();
    assert!(check_listen(local, false, false).is_ok());
    assert!(check_listen(public, true, false).is_ok());
    assert!(check_listen(public, false, true).is_ok());
    let error = check_listen(public, false, false).unwrap_err().to_string();
    assert!(
        error.contains("0.0.0.0:7070") && error.contains("--insecure"),
        "{error}"
    );
}
