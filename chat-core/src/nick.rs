//! Nicknames (protocol.md, "Nicknames"): validation, comparison, and the
//! registry of claimed nicks.

use std::collections::HashMap;

use crate::ConnId;

/// The most Unicode scalar values a nick may have.
pub const MAX_NICK_CHARS: usize = 32;

/// Characters of a generated nick, as in the original Go server.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Length of a generated nick.
pub const GENERATED_LEN: usize = 4;

/// Why a requested nick cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickError {
    /// Empty, too long, or holding a character other than a letter, digit, `_` or `-`.
    Invalid,
    /// Another connected client holds it (compared case-insensitively).
    Taken,
}

/// Whether `nick` is 1-32 alphanumerics, `_` or `-`.
pub fn is_valid(nick: &str) -> bool {
    let mut count = 0;
    for c in nick.chars() {
        count += 1;
        if count > MAX_NICK_CHARS || !(c.is_alphanumeric() || c == '_' || c == '-') {
            return false;
        }
    }
    count > 0
}

/// The form two nicks are compared in: equal keys mean the same nick.
pub fn key(nick: &str) -> String {
    nick.to_lowercase()
}

/// Builds a candidate nick of `len` characters from `next_u32`, drawing
/// uniformly from [A-Za-z0-9] by rejection sampling.
pub fn generate(len: usize, mut next_u32: impl FnMut() -> u32) -> String {
    let mut nick = String::with_capacity(len);
    while nick.len() < len {
        // The top 6 bits give 0..64; 62 and 63 are redrawn to stay uniform.
        let index = (next_u32() >> 26) as usize;
        if let Some(&c) = GENERATED_ALPHABET.get(index) {
            nick.push(char::from(c));
        }
    }
    nick
}

/// Who holds which nick. Claims go through here alone, so a later
/// multi-node deployment can put a global claim behind the same calls.
#[derive(Debug, Default, Clone)]
pub struct NickRegistry {
    holders: HashMap<String, ConnId>,
}

impl NickRegistry {
    /// The connection holding `nick`, compared case-insensitively.
    pub fn holder(&self, nick: &str) -> Option<ConnId> {
        self.holders.get(&key(nick)).copied()
    }

    /// Claims a random nick no one holds for `conn`, drawing from
    /// `next_u32`: [`GENERATED_LEN`] characters while that finds one
    /// quickly, longer if that space is crowded.
    pub(crate) fn claim_generated(
        &mut self,
        conn: ConnId,
        mut next_u32: impl FnMut() -> u32,
    ) -> String {
        let mut len = GENERATED_LEN;
        loop {
            for _ in 0..16 {
                let candidate = generate(len, &mut next_u32);
                if self.claim(&candidate, conn).is_ok() {
                    return candidate;
                }
            }
            len += 1;
        }
    }

    /// Claims `nick` for `conn`, which must not hold another nick.
    pub fn claim(&mut self, nick: &str, conn: ConnId) -> Result<(), NickError> {
        if !is_valid(nick) {
            return Err(NickError::Invalid);
        }
        match self.holders.entry(key(nick)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(NickError::Taken),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(conn);
                Ok(())
            }
        }
    }

    /// Moves `conn` from `old` to `new`. A case variant of one's own nick
    /// is allowed; on error nothing changes.
    pub fn rename(&mut self, old: &str, new: &str, conn: ConnId) -> Result<(), NickError> {
        if !is_valid(new) {
            return Err(NickError::Invalid);
        }
        let new_key = key(new);
        match self.holders.get(&new_key) {
            Some(&holder) if holder != conn => return Err(NickError::Taken),
            _ => {}
        }
        self.holders.remove(&key(old));
        self.holders.insert(new_key, conn);
        Ok(())
    }

    /// Gives up `nick`, if `conn` holds it.
    pub fn release(&mut self, nick: &str, conn: ConnId) {
        let nick_key = key(nick);
        if self.holders.get(&nick_key) == Some(&conn) {
            self.holders.remove(&nick_key);
        }
    }

    /// Number of claimed nicks.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Whether no nick is claimed.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // protocol.md, "Nicknames": 1-32 alphanumerics, `_` or `-`.
    #[test]
    fn validity() {
        assert!(is_valid("a"));
        assert!(is_valid("Zoë_-9"));
        assert!(is_valid("日本語"));
        assert!(is_valid(&"x".repeat(32)));
        assert!(!is_valid(&"x".repeat(33)));
        assert!(
            is_valid(&"é".repeat(32)),
            "the limit counts characters, not bytes"
        );
        assert!(!is_valid(""));
        assert!(!is_valid("a b"));
        assert!(!is_valid("a.b"));
        assert!(!is_valid("a\u{fffd}"));
        assert!(!is_valid("*"));
    }

    // protocol.md, "Nicknames": 4 characters from [A-Za-z0-9].
    #[test]
    fn generated_nicks_use_the_alphabet() {
        let mut state = 0x1234_5678_u32;
        let nick = generate(GENERATED_LEN, || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state
        });
        assert_eq!(nick.chars().count(), 4);
        assert!(nick.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn claims_compare_case_insensitively() {
        let (a, b) = (ConnId(1), ConnId(2));
        let mut registry = NickRegistry::default();
        registry.claim("Alice", a).unwrap();
        assert_eq!(registry.claim("aLICE", b), Err(NickError::Taken));
        assert_eq!(registry.holder("ALICE"), Some(a));
        registry.rename("Alice", "ALICE", a).unwrap();
        assert_eq!(registry.rename("x", "alice", b), Err(NickError::Taken));
        registry.release("alice", b);
        assert_eq!(
            registry.holder("alice"),
            Some(a),
            "only the holder releases"
        );
        registry.release("alice", a);
        assert!(registry.is_empty());
    }
}
