//! Which hash slot a key lives in, as every Redis Cluster node computes it, so checkers
//! can tell which shard acknowledged a write without depending on the workload crate.
//!
//! Slot = CRC16/XMODEM (polynomial 0x1021, initial 0, no reflection) of the key's hash tag
//! (the bytes between the first `{` and the first `}` after it, when there are any) or of
//! the whole key, modulo 16384.

/// Number of hash slots.
const SLOTS: u16 = 16384;

/// CRC16/XMODEM, bit by bit: the keys of one history are few, so no table is needed.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            let carry = crc & 0x8000 != 0;
            crc <<= 1;
            if carry {
                crc ^= 0x1021;
            }
        }
    }
    crc
}

/// The part of a key that is hashed: its non-empty hash tag, or the whole key.
fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// The hash slot of `key`.
pub fn key_slot(key: &str) -> u16 {
    crc16_xmodem(hashed_part(key.as_bytes())) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value_and_known_slots() {
        // The CRC catalogue's check value for CRC-16/XMODEM.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        // Slots from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("somekey"), 11058);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot("foo{{bar}}zap"), crc16_xmodem(b"{bar") % SLOTS);
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
    }
}
