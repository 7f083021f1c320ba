//! Framing for the plugin host protocol (`proto/harrow/v1/plugin.proto`):
//! each message is a 4-byte big-endian length and the protobuf bytes.

use std::io::{self, Read, Write};

use crate::limits::MAX_MESSAGE_BYTES;
use prost::Message;

/// `message`, framed.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let len = message.encoded_len();
    let mut bytes = Vec::with_capacity(4 + len);
    bytes.extend_from_slice(&(len as u32).to_be_bytes());
    message
        .encode(&mut bytes)
        .expect("a Vec grows to fit the message");
    bytes
}

pub fn write_message(writer: &mut impl Write, message: &impl Message) -> io::Result<()> {
    writer.write_all(&frame(message))?;
    writer.flush()
}

/// The next message; `None` at a clean end of stream.
pub fn read_message<M: Message + Default>(reader: &mut impl Read) -> io::Result<Option<M>> {
    // End of stream is clean only between messages.
    let mut len = [0u8; 4];
    let first = loop {
        match reader.read(&mut len) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => break read?,
        }
    };
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut len[first..])?;
    let mut body = body_buffer(len)?;
    reader.read_exact(&mut body)?;
    decode(&body).map(Some)
}

/// A buffer for a body of the length in `len`, if within the limit.
fn body_buffer(len: [u8; 4]) -> io::Result<Vec<u8>> {
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("plugin host message of {len} bytes is over the limit"),
        ));
    }
    Ok(vec![0u8; len])
}

fn decode<M: Message + Default>(body: &[u8]) -> io::Result<M> {
    M::decode(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The async twin of [`read_message`], for the child's stdout.
pub async fn read_message_async<M: Message + Default>(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
) -> io::Result<Option<M>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    let first = reader.read(&mut len).await?;
    if first == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut len[first..]).await?;
    let mut body = body_buffer(len)?;
    reader.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harrow_proto::v1 as pb;

    #[test]
    fn messages_round_trip_and_end_cleanly() {
        let message = pb::PluginRequest {
            attempt_id: "job-000001/m-00000/a-1".to_string(),
            request: Some(pb::plugin_request::Request::Map(vec![1, 2, 3])),
        };
        let mut bytes = Vec::new();
        write_message(&mut bytes, &message).unwrap();
        write_message(&mut bytes, &message).unwrap();
        let mut reader = bytes.as_slice();
        for _ in 0..2 {
            let read: pb::PluginRequest = read_message(&mut reader).unwrap().unwrap();
            assert_eq!(read, message);
        }
        assert!(
            read_message::<pb::PluginRequest>(&mut reader)
                .unwrap()
                .is_none()
        );
        let mut truncated = &bytes[..bytes.len() / 2 + 1];
        read_message::<pb::PluginRequest>(&mut truncated).unwrap();
        assert!(read_message::<pb::PluginRequest>(&mut truncated).is_err());
    }
}
