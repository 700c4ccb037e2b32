//! [`Connection`]: RESP frames over one TCP stream, read buffered and written in batches.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frame::Frame;

/// A client (or replication) connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
    /// Replies in RESP3 (the client sent `HELLO 3`).
    resp3: bool,
}

impl Connection {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            buf: Vec::with_capacity(16 << 10),
            start: 0,
            out: Vec::new(),
            resp3: false,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// A frame already in the buffer, without reading.
    ///
    /// # Errors
    /// When the buffered bytes are not RESP.
    pub fn buffered_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        match Frame::parse(&self.buf[self.start..])? {
            Some((f, n)) => {
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// Reads the next frame.
    ///
    /// # Returns
    /// `Ok(None)` when the peer closed cleanly between frames.
    ///
    /// # Errors
    /// On an I/O error, a close in the middle of a frame, or bytes that are not RESP.
    pub async fn read_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(Some(f));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                anyhow::bail!("connection reset by peer in the middle of a frame");
            }
        }
    }

    /// Queues a frame, in RESP3 once [`Connection::set_resp3`] says so;
    /// [`Connection::flush`] sends what is queued.
    pub fn queue(&mut self, frame: &Frame) {
        if self.resp3 {
            frame.encode3(&mut self.out);
        } else {
            frame.encode(&mut self.out);
        }
    }

    /// Replies from now on in RESP3 (`true`) or RESP2.
    pub fn set_resp3(&mut self, resp3: bool) {
        self.resp3 = resp3;
    }

    /// Sends everything queued.
    ///
    /// # Errors
    /// On an I/O error.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Queues and sends one frame.
    ///
    /// # Errors
    /// On an I/O error.
    pub async fn write_frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.queue(frame);
        self.flush().await
    }

    /// The stream, for a connection that leaves RESP (none yet) or needs splitting.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        let rest = self.buf[self.start..].to_vec();
        (self.stream, rest)
    }
}
