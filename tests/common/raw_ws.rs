//! A WebSocket client written by hand over TCP, for what a real client library refuses
//! to send: reserved bits, unknown opcodes, unmasked or fragmented control frames,
//! invalid UTF-8, bad close frames; and for a client that stops reading (a small
//! receive buffer that fills).

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use super::server::WAIT;

/// A frame as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// Payload (servers never mask).
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame (`None` without a payload).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// How the server ended a raw connection.
#[derive(Debug, PartialEq, Eq)]
pub enum RawEnd {
    /// A close frame with this code (or none, for an empty close frame).
    Close(Option<u16>),
    /// EOF or reset without a close frame.
    Dropped,
}

/// A raw WebSocket connection.
pub struct RawWs {
    /// The TCP stream (after the HTTP upgrade).
    pub tcp: TcpStream,
    buffer: Vec<u8>,
}

/// Builds one frame: `first` is the first header byte (FIN, RSV and opcode as the test
/// wants them); masked with a fixed key unless `masked` is false.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A close frame's payload: the code, then the reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

impl RawWs {
    /// Upgrades `path` on `addr` (with `headers` added); `recv_buffer` sets a small
    /// SO_RCVBUF first, for a client that is meant to stop reading.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        recv_buffer: Option<u32>,
    ) -> Self {
        let mut tcp = raw_tcp(addr, recv_buffer).await;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .expect("write upgrade");
        let (head, rest) = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        Self { tcp, buffer: rest }
    }

    /// Upgrades `/realtime/subscribe`, authenticates as `token` and reads `welcome`.
    pub async fn authenticated(addr: SocketAddr, token: &str, recv_buffer: Option<u32>) -> Self {
        let mut ws = Self::connect(addr, "/realtime/subscribe", &[], recv_buffer).await;
        ws.send_json(json!({"type": "auth", "token": token})).await;
        let welcome = ws.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write");
    }

    /// Sends a masked text frame of `value`.
    pub async fn send_json(&mut self, value: Value) {
        self.send_raw(&frame(0x81, value.to_string().as_bytes(), true))
            .await;
    }

    /// The next frame; `None` on EOF or reset.
    pub async fn recv_frame(&mut self) -> Option<RawFrame> {
        tokio::time::timeout(WAIT, self.read_frame())
            .await
            .expect("timed out waiting for a frame")
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buffer.len() < n {
            let mut chunk = [0u8; 8192];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
            }
        }
        true
    }

    async fn read_frame(&mut self) -> Option<RawFrame> {
        if !self.fill(2).await {
            return None;
        }
        let (fin, opcode) = (self.buffer[0] & 0x80 != 0, self.buffer[0] & 0x0f);
        let (len, header) = match self.buffer[1] & 0x7f {
            126 => {
                self.fill(4).await.then_some(())?;
                (
                    u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize,
                    4,
                )
            }
            127 => {
                self.fill(10).await.then_some(())?;
                let bytes: [u8; 8] = self.buffer[2..10].try_into().expect("8 bytes");
                (u64::from_be_bytes(bytes) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(header + len).await.then_some(())?;
        let payload = self.buffer[header..header + len].to_vec();
        self.buffer.drain(..header + len);
        Some(RawFrame {
            fin,
            opcode,
            payload,
        })
    }

    /// The next text frame as JSON (control frames skipped).
    pub async fn recv_json(&mut self) -> Value {
        loop {
            let frame = self.recv_frame().await.expect("connection ended");
            match frame.opcode {
                1 => return serde_json::from_slice(&frame.payload).expect("JSON"),
                8 => panic!("closed: {:?}", frame.close_code()),
                _ => continue,
            }
        }
    }

    /// Reads until the server's close frame (answering nothing) or the end of the
    /// connection.
    pub async fn ended(&mut self) -> RawEnd {
        loop {
            match self.recv_frame().await {
                None => return RawEnd::Dropped,
                Some(frame) if frame.opcode == 8 => return RawEnd::Close(frame.close_code()),
                Some(_) => continue,
            }
        }
    }

    /// After the server's close frame: whether the server then closes the TCP
    /// connection (EOF) within `within`.
    pub async fn tcp_closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            let mut chunk = [0u8; 1024];
            loop {
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .is_ok()
    }
}

/// A TCP connection to `addr`, with SO_RCVBUF set first when asked.
pub async fn raw_tcp(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Reads an HTTP response head; returns it and the bytes read after it.
pub async fn read_head(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buffer = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                return (head, buffer[end + 4..].to_vec());
            }
            let mut chunk = [0u8; 4096];
            let read = tcp.read(&mut chunk).await.expect("read head");
            assert!(read > 0, "connection closed before the response head");
            buffer.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("timed out waiting for the response head")
}
