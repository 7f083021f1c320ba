//! Who may call what: the cluster's bearer tokens, checked on every RPC.
//!
//! There are two roles. The *client* token lets its holder use the job
//! service (submit, watch, cancel, upload plugins); the *worker* token lets
//! its holder use the worker service (register, pull tasks, commit) and
//! fetch shuffle segments from other workers. The coordinator knows both;
//! a worker holds only its own, so a compromised worker cannot submit jobs
//! or upload plugins. A call without the right token is refused with
//! `UNAUTHENTICATED` before its handler runs, so it changes nothing.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Request, Status};

/// Shortest token accepted: 128 bits as hex.
pub const MIN_TOKEN_BYTES: usize = 32;

const AUTHORIZATION: &str = "authorization";
const BEARER: &str = "Bearer ";

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read the token file {path}: {source}")]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the token in {path} is {len} bytes; use at least {MIN_TOKEN_BYTES} printable ASCII characters without spaces (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    WeakToken { path: PathBuf, len: usize },
    #[error(
        "the token in {path} has characters other than printable ASCII without spaces (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    BadToken { path: PathBuf },
    #[error("cannot read {what} {path}: {source}")]
    ReadTls {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a PEM {what}: it has no `{marker}` line")]
    NotPem {
        what: &'static str,
        marker: &'static str,
        path: PathBuf,
    },
    #[error(
        "refusing to listen on {address} without authentication: anyone who can reach it could run code on this cluster. Give a token file (--token-file, and --worker-token-file on the coordinator), or listen on 127.0.0.1, or pass --insecure to accept any caller"
    )]
    Unauthenticated { address: SocketAddr },
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// A role's shared secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads a token file: the first line, without surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Token, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::ReadToken {
            path: path.to_path_buf(),
            source,
        })?;
        Token::parse(text.lines().next().unwrap_or("").trim()).map_err(|len| match len {
            Some(len) => SecurityError::WeakToken {
                path: path.to_path_buf(),
                len,
            },
            None => SecurityError::BadToken {
                path: path.to_path_buf(),
            },
        })
    }

    /// A token from its text: `Err(Some(len))` when too short, `Err(None)`
    /// when it has characters a header cannot carry.
    fn parse(text: &str) -> Result<Token, Option<usize>> {
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(None);
        }
        if text.len() < MIN_TOKEN_BYTES {
            return Err(Some(text.len()));
        }
        Ok(Token(text.into()))
    }

    /// A fresh random token, for a cluster that lives in one process
    /// (`harrow run`), so that other local users cannot call it.
    pub fn random() -> std::io::Result<Token> {
        let bytes: [u8; 32] = random_bytes()?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Token(hex.into()))
    }

    /// A token received on the wire; `None` unless well formed.
    pub fn from_wire(text: &str) -> Option<Token> {
        Token::parse(text).ok()
    }

    /// The secret itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token. SHA-256 digests are compared in
    /// constant time, which reveals neither the token's bytes nor its
    /// length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        let expected: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        presented.ct_eq(&expected).into()
    }
}

/// What a caller presents: its token on every outgoing call, if it has one.
#[derive(Debug, Clone, Default)]
pub struct Credential {
    header: Option<MetadataValue<Ascii>>,
}

impl Credential {
    pub fn new(token: Option<&Token>) -> Credential {
        Credential {
            header: token.map(|token| {
                format!("{BEARER}{}", token.0)
                    .parse()
                    .expect("a token is printable ASCII")
            }),
        }
    }
}

impl Interceptor for Credential {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert(AUTHORIZATION, header.clone());
        }
        Ok(request)
    }
}

/// A channel whose every call carries this process's credential.
pub type AuthChannel = InterceptedService<Channel, Credential>;

/// The name every worker's certificate must hold: reducers reach workers by
/// address (a pod's IP changes), so they verify this name instead.
pub const WORKER_TLS_NAME: &str = "harrow-worker";

/// TLS material: this process's certificate and key, and the CA whose
/// certificates it trusts. Every TLS connection in a cluster is mutual:
/// servers require a client certificate from that CA too.
#[derive(Debug, Clone)]
pub struct Tls {
    identity: Identity,
    ca: Certificate,
    /// The certificate and key as read, for servers other than gRPC's.
    certificate_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Tls {
    /// Reads PEM files, naming the one that is missing or not PEM.
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<Tls, SecurityError> {
        let read = |what, marker, path: &Path| -> Result<Vec<u8>, SecurityError> {
            let bytes = std::fs::read(path).map_err(|source| SecurityError::ReadTls {
                what,
                path: path.to_path_buf(),
                source,
            })?;
            if !String::from_utf8_lossy(&bytes).contains(marker) {
                return Err(SecurityError::NotPem {
                    what,
                    marker,
                    path: path.to_path_buf(),
                });
            }
            Ok(bytes)
        };
        const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";
        let cert = read("certificate (--tls-cert)", CERTIFICATE, cert)?;
        let key = read("private key (--tls-key)", "PRIVATE KEY-----", key)?;
        let ca = read("CA certificate (--tls-ca)", CERTIFICATE, ca)?;
        Ok(Tls {
            identity: Identity::from_pem(&cert, &key),
            ca: Certificate::from_pem(ca),
            certificate_pem: cert,
            key_pem: key,
        })
    }

    /// This process's certificate (chain) and private key, PEM.
    pub fn certificate_and_key(&self) -> (&[u8], &[u8]) {
        (&self.certificate_pem, &self.key_pem)
    }

    /// A server's side: its certificate, and client certificates required.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity.clone())
            .ca_certificate(self.ca.clone())
    }
}

/// A gRPC server builder with the per-connection bounds
/// (`limits::bounded`), and TLS when configured.
pub fn server(tls: Option<&Tls>) -> Result<Server, tonic::transport::Error> {
    let server = crate::rpc::limits::bounded(Server::builder());
    match tls {
        Some(tls) => server.tls_config(tls.server()),
        None => Ok(server),
    }
}

/// How this process reaches the others: the credential it presents on
/// every call, over TLS when configured.
#[derive(Debug, Clone, Default)]
pub struct Connector {
    credential: Credential,
    tls: Option<Tls>,
}

impl Connector {
    pub fn new(token: Option<&Token>, tls: Option<Tls>) -> Connector {
        Connector {
            credential: Credential::new(token),
            tls,
        }
    }

    /// A lazily connecting channel to `url`.
    pub fn channel(&self, url: &str) -> Result<AuthChannel, ConnectError> {
        Ok(self.wrap(self.endpoint(url, None)?.connect_lazy()))
    }

    /// A lazily connecting channel to another worker's shuffle service at
    /// `address` (`host:port`).
    pub fn worker_channel(&self, address: &str) -> Result<AuthChannel, ConnectError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{address}");
        Ok(self.wrap(self.endpoint(&url, Some(WORKER_TLS_NAME))?.connect_lazy()))
    }

    /// A channel to `url`, connected before this returns.
    pub async fn connect(&self, url: &str) -> Result<AuthChannel, ConnectError> {
        let channel =
            self.endpoint(url, None)?
                .connect()
                .await
                .map_err(|e| ConnectError::Unreachable {
                    url: url.to_string(),
                    reason: with_causes(e.to_string(), &e),
                })?;
        Ok(self.wrap(channel))
    }

    /// An endpoint for `url`, whose scheme must agree with the TLS setting;
    /// `name` overrides the name the server's certificate is checked for.
    fn endpoint(&self, url: &str, name: Option<&str>) -> Result<Endpoint, ConnectError> {
        let refuse = |reason: String| ConnectError::Url {
            url: url.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| refuse(e.to_string()))?;
        let https = endpoint.uri().scheme_str() == Some("https");
        match &self.tls {
            Some(tls) if https => {
                let mut config = tls.client();
                if let Some(name) = name {
                    config = config.domain_name(name);
                }
                endpoint
                    .tls_config(config)
                    .map_err(|e| refuse(with_causes(e.to_string(), &e)))
            }
            Some(_) => Err(refuse(
                "TLS is configured (--tls-cert), so the URL must start with https://".into(),
            )),
            None if https => Err(refuse(
                "an https:// URL needs --tls-cert, --tls-key and --tls-ca".into(),
            )),
            None => Ok(endpoint),
        }
    }

    fn wrap(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.credential.clone())
    }
}

/// A failed call's message with the causes tonic keeps apart (a refused
/// certificate shows only as "transport error" without them).
pub fn describe_status(status: &Status) -> String {
    with_causes(status.message().to_string(), status)
}

/// Bytes from the operating system's random source.
fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes)
}

/// A process's incarnation: drawn once at its start, so a coordinator can
/// tell a worker process from another given the same id.
pub fn draw_incarnation() -> std::io::Result<u64> {
    random_bytes().map(u64::from_le_bytes)
}

/// Whether a call failed because a TLS peer refused this process's
/// certificate or presented one this process refuses: waiting will not
/// change that. The HTTP/2 layer keeps only the TLS error's text, in an
/// `InvalidData` I/O error.
pub fn is_certificate_refused(status: &Status) -> bool {
    causes(status)
        .find_map(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .filter(|io| io.kind() == std::io::ErrorKind::InvalidData)
        })
        .is_some_and(|io| {
            let text = io.to_string();
            text.contains("fatal alert") || text.contains("certificate")
        })
}

/// Whether a call failed because its connection was refused: nothing
/// listens at the address.
pub fn is_connection_refused(status: &Status) -> bool {
    causes(status).any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// The errors that caused `error`, nearest first.
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(error.source(), |cause| cause.source())
}

/// `text` followed by the causes of `error`, which tonic's transport errors
/// keep apart; a cause whose text already ends `text` is not repeated.
fn with_causes(mut text: String, error: &(dyn std::error::Error + 'static)) -> String {
    for cause in causes(error) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(&format!(": {cause}"));
        }
    }
    text
}

/// The roles a service can demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
        }
    }
}

/// A service's door: admits calls bearing its role's token, or every call
/// when no token is configured.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    role: Role,
    expected: Option<Token>,
}

impl TokenCheck {
    pub fn new(role: Role, token: Option<&Token>) -> TokenCheck {
        TokenCheck {
            role,
            expected: token.cloned(),
        }
    }

    fn admits(&self, request: &Request<()>) -> bool {
        let Some(expected) = &self.expected else {
            return true;
        };
        let Some(presented) = request
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(BEARER.as_bytes()))
        else {
            return false;
        };
        expected.matches(presented)
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.admits(&request) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(format!(
                "this call needs the cluster's {} token (--token-file)",
                self.role.name()
            )))
        }
    }
}

/// Refuses to serve on an address other hosts can reach unless callers
/// must authenticate, or the operator said `--insecure`.
pub fn check_listen(
    address: SocketAddr,
    authenticated: bool,
    insecure: bool,
) -> Result<(), SecurityError> {
    if address.ip().is_loopback() || authenticated || insecure {
        Ok(())
    } else {
        Err(SecurityError::Unauthenticated { address })
    }
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
