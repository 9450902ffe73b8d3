//! Real servers on loopback for what the portal sends out: a small SMTP receiver that
//! speaks enough of RFC 5321 for lettre (and can stall after accepting a connection),
//! and an SMS gateway (actix) that answers with scripted statuses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl ReceivedMail {
    /// Subject, plain text and HTML, decoded.
    pub fn parts(&self) -> (String, String, String, usize) {
        let message = mail_parser::MessageParser::default()
            .parse(self.data.as_bytes())
            .unwrap();
        (
            message.subject().unwrap_or_default().to_owned(),
            message.body_text(0).unwrap_or_default().into_owned(),
            message.body_html(0).unwrap_or_default().into_owned(),
            message.attachment_count(),
        )
    }
}

#[derive(Default)]
struct SmtpInner {
    received: Vec<ReceivedMail>,
    connections: usize,
}

/// An SMTP server on 127.0.0.1.
#[derive(Clone)]
pub struct SmtpServer {
    pub address: SocketAddr,
    inner: Arc<Mutex<SmtpInner>>,
}

impl SmtpServer {
    /// Accepts and stores every message.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Accepts TCP connections and never says a word: a sender waits until its timeout.
    pub async fn start_stalling() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(stall: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(SmtpInner::default()));
        let shared = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                let shared = shared.clone();
                tokio::spawn(async move {
                    if stall {
                        // Hold the connection open, silent, until the client leaves.
                        let mut stream = stream;
                        let mut sink = Vec::new();
                        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
                    } else {
                        let _ = serve_smtp(stream, shared).await;
                    }
                });
            }
        });
        Self { address, inner }
    }

    /// `smtp://127.0.0.1:PORT` (no TLS: loopback only).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections
    }

    /// Waits until `count` messages arrived (or gives up after a minute) and returns all.
    pub async fn wait_for(&self, count: usize) -> Vec<ReceivedMail> {
        for _ in 0..600 {
            if self.received().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.received()
    }
}

/// An address where nothing listens: connections are refused.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("smtp://{address}")
}

async fn serve_smtp(stream: TcpStream, shared: Arc<Mutex<SmtpInner>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 test.invalid ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-test.invalid\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().to_owned();
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(command[8..].trim().to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            shared.lock().unwrap().received.push(ReceivedMail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 Command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// One request as the SMS gateway received it.
#[derive(Debug, Clone)]
pub struct ReceivedSms {
    pub authorization: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct GatewayInner {
    script: VecDeque<u16>,
    received: Vec<ReceivedSms>,
}

/// An HTTP SMS gateway on 127.0.0.1: answers the scripted statuses in order, then 200.
#[derive(Clone)]
pub struct SmsGateway {
    pub address: SocketAddr,
    inner: Arc<Mutex<GatewayInner>>,
}

impl SmsGateway {
    pub async fn start(script: &[u16]) -> Self {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let inner = Arc::new(Mutex::new(GatewayInner {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let shared = web::Data::new(inner.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            App::new().app_data(shared.clone()).route(
                "/send",
                web::post().to(
                    |request: HttpRequest,
                     body: web::Json<serde_json::Value>,
                     shared: web::Data<Arc<Mutex<GatewayInner>>>| async move {
                        let mut inner = shared.lock().unwrap();
                        inner.received.push(ReceivedSms {
                            authorization: request
                                .headers()
                                .get("authorization")
                                .map(|value| value.to_str().unwrap().to_owned()),
                            body: body.into_inner(),
                        });
                        let status = inner.script.pop_front().unwrap_or(200);
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                            .json(serde_json::json!({"status": status}))
                    },
                ),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { address, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/send", self.address)
    }

    pub fn received(&self) -> Vec<ReceivedSms> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits until `count` requests arrived (or gives up after a minute).
    pub async fn wait_for(&self, count: usize) -> Vec<ReceivedSms> {
        for _ in 0..600 {
            if self.received().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.received()
    }
}
