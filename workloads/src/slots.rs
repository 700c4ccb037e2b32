//! Key to hash slot, as every Redis Cluster node computes it: CRC16 (XMODEM) of the key, or
//! of its hash tag (the part between the first `{` and the next `}`, when non-empty), mod
//! 16384.

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC16: [u16; 256] = crc16_table();

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[usize::from(((crc >> 8) as u8) ^ b)]
    })
}

/// The hash slot of a key.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// A hash tag whose slot is `slot`, found by counting up; used to spread a workload's keys
/// evenly over the slot space (`s7{tag}` lands where we want it).
pub fn tag_for_slot(slot: u16) -> String {
    (0u64..)
        .map(|n| format!("{n:x}"))
        .find(|tag| crc16(tag.as_bytes()) % SLOTS == slot)
        .expect("every slot has a tag within 2^64 tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn known_slots() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // Empty tag: the whole key is hashed.
        assert_eq!(key_slot(b"foo{}bar"), crc16(b"foo{}bar") % SLOTS);
        // Only the first tag counts.
        assert_eq!(key_slot(b"a{b}{c}"), key_slot(b"b"));
    }

    #[test]
    fn tags_land_on_their_slot() {
        for slot in [0, 1, 5460, 5461, 10922, 16383] {
            let key = format!("s{{{}}}", tag_for_slot(slot));
            assert_eq!(key_slot(key.as_bytes()), slot);
        }
    }
}
