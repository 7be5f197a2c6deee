//! TLS for control and data connections (RFC 4217) with rustls.
//!
//! Each control connection gets its own `ClientConfig` and so its own session cache: the data
//! connections it opens then resume *its* session, which vsftpd (`require_ssl_reuse`) and
//! proftpd demand; a cache shared across control connections makes proftpd answer 425.

use std::io;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, NamedGroup, RootCertStore,
    SignatureScheme,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::error::{FtpError, FtpResult};

/// A TLS session over TCP, as used for control and data connections.
pub type TlsStream = rustls::StreamOwned<ClientConnection, TcpStream>;

/// How certificates are checked and which protocol versions are offered.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Trust only the certificates in this PEM file instead of the system roots.
    pub cafile: Option<PathBuf>,
    /// Accept any certificate (explicit opt-out; man-in-the-middle possible).
    pub insecure: bool,
    /// Offer only TLS 1.2 (for servers whose TLS 1.3 session handling is broken).
    pub tls12_only: bool,
}

/// Everything needed to open TLS sessions, built once per mount.
#[derive(Debug, Clone)]
pub struct TlsContext {
    roots: Arc<RootCertStore>,
    insecure: bool,
    tls12_only: bool,
    provider: Arc<CryptoProvider>,
}

impl TlsContext {
    /// Loads the trust anchors: the CA file if given, else the system's roots.
    pub fn new(settings: &TlsSettings) -> FtpResult<TlsContext> {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &settings.cafile {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                FtpError::Tls(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    FtpError::Tls(format!("bad certificate in {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    FtpError::Tls(format!("bad CA certificate in {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(FtpError::Tls(format!(
                    "no certificates found in CA file {}",
                    path.display()
                )));
            }
        } else if !settings.insecure {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(FtpError::Tls(
                    "no system CA certificates found (install ca-certificates or pass cafile=)"
                        .into(),
                ));
            }
        }
        Ok(TlsContext {
            roots: Arc::new(roots),
            insecure: settings.insecure,
            tls12_only: settings.tls12_only,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// A fresh client configuration with its own session cache, for one control connection
    /// and the data connections it opens.
    pub fn session_config(&self) -> FtpResult<SessionConfig> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| FtpError::Tls(e.to_string()))?;
        let mut config = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                    self.provider.clone(),
                )))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth()
        };
        let store = Arc::new(CountingStore {
            inner: ClientSessionMemoryCache::new(32),
            tls13_tickets: AtomicUsize::new(0),
            ever_received: AtomicBool::new(false),
        });
        config.resumption = rustls::client::Resumption::store(store.clone());
        Ok(SessionConfig {
            config: Arc::new(config),
            store,
        })
    }
}

/// A client configuration whose session cache belongs to one control connection.
#[derive(Clone)]
pub struct SessionConfig {
    pub config: Arc<ClientConfig>,
    store: Arc<CountingStore>,
}

impl SessionConfig {
    /// How many TLS 1.3 tickets are left to resume the control session on a data connection.
    /// rustls uses each ticket once, and servers send new ones only on connections they
    /// write to: uploads use tickets up without replacing them.
    pub fn tls13_tickets(&self) -> usize {
        self.store.tls13_tickets.load(Ordering::Relaxed)
    }

    /// Whether the server ever sent a TLS 1.3 ticket (some never do and accept full
    /// handshakes on data connections instead).
    pub fn server_sends_tickets(&self) -> bool {
        self.store.ever_received.load(Ordering::Relaxed)
    }
}

/// rustls's in-memory session cache, counting the TLS 1.3 tickets it holds.
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tls13_tickets: AtomicUsize,
    ever_received: AtomicBool,
}

/// rustls keeps at most this many TLS 1.3 tickets per server name.
const MAX_TICKETS_KEPT: usize = 8;

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(name)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(name, value)
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.ever_received.store(true, Ordering::Relaxed);
        let _ = self
            .tls13_tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n + 1).min(MAX_TICKETS_KEPT))
            });
        self.inner.insert_tls13_ticket(name, value)
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(name);
        if ticket.is_some() {
            let _ = self
                .tls13_tickets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        ticket
    }
}

/// The name a certificate must carry: the host as given by the user (name or IP literal).
pub fn server_name(host: &str) -> FtpResult<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|_| FtpError::Tls(format!("{host:?} is not a valid TLS server name")))
}

/// Runs a TLS handshake over `sock` to completion.
pub fn connect(
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    sock: TcpStream,
) -> FtpResult<TlsStream> {
    let conn = ClientConnection::new(config.clone(), name.clone())
        .map_err(|e| FtpError::Tls(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, sock);
    finish_handshake(&mut stream)?;
    Ok(stream)
}

/// Drives a started handshake to its end, turning rustls errors into readable ones.
pub fn finish_handshake(stream: &mut TlsStream) -> FtpResult<()> {
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(handshake_error)?;
    }
    Ok(())
}

/// Says what went wrong in a handshake: certificate problems must be obvious to the user.
fn handshake_error(e: io::Error) -> FtpError {
    if e.kind() == io::ErrorKind::InvalidData
        && let Some(inner) = e.get_ref()
        && let Some(tls) = inner.downcast_ref::<rustls::Error>()
    {
        return match tls {
            rustls::Error::InvalidCertificate(why) => FtpError::Tls(format!(
                "server certificate rejected ({why:?}); pass cafile= to trust its CA or tls_insecure to skip the check"
            )),
            other => FtpError::Tls(other.to_string()),
        };
    }
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return FtpError::Io(e);
    }
    FtpError::Tls(format!("handshake failed: {e}"))
}

/// Sends close_notify and reads until the server closes, so that TLS 1.3 session tickets the
/// server sent on this connection are stored for the next data connection (uploads otherwise
/// never read them and the next transfer cannot resume the session).
pub fn close_gracefully(stream: &mut TlsStream) -> io::Result<()> {
    use std::io::{Read, Write};
    stream.conn.send_close_notify();
    stream.flush()?;
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock)?;
    }
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // The server may just close the TCP connection without close_notify: that is
            // fine once our data is written.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Verifier for `tls_insecure`: any certificate, but signatures still checked so the
/// handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
