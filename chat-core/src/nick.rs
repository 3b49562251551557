//! Nicknames (protocol.md, "Nicknames"): validation, comparison, and the
//! registry of claimed nicks.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::mixed_script::AugmentedScriptSet;

use crate::ConnId;

/// The most Unicode scalar values a nick may have.
pub const MAX_NICK_CHARS: usize = 32;

/// Characters of a generated nick, as in the original Go server.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Length of a generated nick.
pub const GENERATED_LEN: usize = 4;

/// The most combining marks (General_Category Mark) one base character may
/// carry in a nick.
pub const MAX_COMBINING_MARKS: usize = 3;

/// How many times [`key`] applies its folding step at most while the result
/// still changes. Every string seen so far settles within two.
const MAX_KEY_ROUNDS: usize = 8;

/// Why a requested nick cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickError {
    /// Empty, too long, or holding a character other than a letter, digit, `_` or `-`.
    Invalid,
    /// Holds this default-ignorable (invisible) code point, a Hangul filler
    /// among them.
    Invisible(char),
    /// Starts with a combining mark, which has no character to sit on.
    LeadingMark,
    /// Some character carries more than [`MAX_COMBINING_MARKS`] combining marks.
    MarkPileUp,
    /// Mixes scripts beyond UTS #39's "highly restrictive" level.
    MixedScripts,
    /// Another connected client holds a nick with the same [`key`].
    Taken,
}

impl NickError {
    /// The text of the `* error: ` line that refuses `nick` with this error.
    pub fn message(self, nick: &str) -> String {
        match self {
            NickError::Invalid => {
                format!("invalid nick {nick}: use 1-{MAX_NICK_CHARS} letters, digits, _ or -")
            }
            NickError::Invisible(c) => format!(
                "invalid nick {nick}: holds invisible character U+{:04X}",
                u32::from(c)
            ),
            NickError::LeadingMark => {
                format!("invalid nick {nick}: starts with a combining mark")
            }
            NickError::MarkPileUp => format!(
                "invalid nick {nick}: more than {MAX_COMBINING_MARKS} combining marks on one character"
            ),
            NickError::MixedScripts => format!(
                "invalid nick {nick}: mixes scripts ({})",
                scripts(nick).join(", ")
            ),
            NickError::Taken => format!("nick {nick} is already taken"),
        }
    }
}

/// Whether `nick` may be used at all (see [`check`]).
pub fn is_valid(nick: &str) -> bool {
    check(nick).is_ok()
}

/// Checks `nick` against every validity rule, in the order protocol.md
/// gives them: length, invisible code points, characters, combining marks,
/// scripts.
pub fn check(nick: &str) -> Result<(), NickError> {
    if nick.is_ascii() {
        // ASCII holds no invisible code point, no mark and one script
        // (Latin, with Common digits and punctuation): only the length and
        // character rules can fail.
        let fits = (1..=MAX_NICK_CHARS).contains(&nick.len());
        let chars_ok = nick
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        return if fits && chars_ok {
            Ok(())
        } else {
            Err(NickError::Invalid)
        };
    }
    check_unicode(nick)
}

/// [`check`] by the rules for any Unicode text.
fn check_unicode(nick: &str) -> Result<(), NickError> {
    let count = nick.chars().count();
    if count == 0 || count > MAX_NICK_CHARS {
        return Err(NickError::Invalid);
    }
    if let Some(c) = nick.chars().find(|&c| is_default_ignorable(c)) {
        return Err(NickError::Invisible(c));
    }
    if !nick
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(NickError::Invalid);
    }
    let mut marks = None;
    for c in nick.chars() {
        if crate::framing::is_combining_mark(c) {
            let on_base = marks.ok_or(NickError::LeadingMark)? + 1;
            if on_base > MAX_COMBINING_MARKS {
                return Err(NickError::MarkPileUp);
            }
            marks = Some(on_base);
        } else {
            marks = Some(0);
        }
    }
    if !is_highly_restrictive(nick) {
        return Err(NickError::MixedScripts);
    }
    Ok(())
}

/// Whether `c` has Default_Ignorable_Code_Point: exactly the characters the
/// UTS #39 skeleton drops, so one whose skeleton alone is empty.
pub fn is_default_ignorable(c: char) -> bool {
    let mut buf = [0; 4];
    unicode_security::skeleton(c.encode_utf8(&mut buf))
        .next()
        .is_none()
}

/// UTS #39 "highly restrictive" on scripts alone: `nick` is single-script
/// (by augmented script sets, so Han with Hiragana and Katakana, Han with
/// Hangul, Han with Bopomofo count as one), or its characters other than
/// Latin ones are single-script within Japanese, Korean or Chinese with
/// Bopomofo. Common and Inherited characters (digits, `_`, `-`, most marks)
/// mix with anything. The identifier-profile part of the level is left out:
/// the character rule above is ours.
pub fn is_highly_restrictive(nick: &str) -> bool {
    let mut all = AugmentedScriptSet::default();
    let mut not_latin = AugmentedScriptSet::default();
    for c in nick.chars() {
        let set = AugmentedScriptSet::for_char(c);
        all.intersect_with(set);
        if !set.base.contains_script(Script::Latin) {
            not_latin.intersect_with(set);
        }
    }
    !all.is_empty() || not_latin.hanb || not_latin.jpan || not_latin.kore
}

/// The scripts of `nick`'s characters, by full name, each once in order of
/// first use; characters common to all scripts are left out, and one
/// shared by a few scripts (like Arabic-Indic digits) names the first.
pub fn scripts(nick: &str) -> Vec<&'static str> {
    let mut names = Vec::new();
    for c in nick.chars() {
        let extension = c.script_extension();
        if extension.is_common() || extension.is_inherited() || extension.is_empty() {
            continue;
        }
        let script = match c.script() {
            Script::Common | Script::Inherited | Script::Unknown => extension.iter().next(),
            script => Some(script),
        };
        if let Some(name) = script.map(Script::full_name) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The form two nicks are compared in: equal keys mean the same nick.
///
/// One step is `NFKC(casefold(skeleton(casefold(NFKC(s)))))`, with full
/// case folding and the UTS #39 confusable skeleton; the key is what
/// repeating that step gives once it no longer changes (at most
/// 8 steps), so `key(key(s)) == key(s)`.
///
/// A nick of ASCII letters, digits, `_` and `-` has for key the keys of
/// its characters put together (each is ASCII, and every step maps ASCII
/// character by character), read from a table built once: generated nicks
/// and most claims skip the Unicode pipeline.
pub fn key(nick: &str) -> String {
    let keys = ascii_keys();
    let fast = nick
        .bytes()
        .map(|b| keys.get(usize::from(b))?.as_deref())
        .collect::<Option<String>>();
    fast.unwrap_or_else(|| unicode_key(nick))
}

/// The key of every ASCII character by code, where that key is ASCII too
/// (all nick characters; some punctuation maps to other symbols).
fn ascii_keys() -> &'static [Option<String>; 128] {
    static KEYS: std::sync::OnceLock<[Option<String>; 128]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        std::array::from_fn(|code| {
            let key = unicode_key(&char::from(code as u8).to_string());
            key.is_ascii().then_some(key)
        })
    })
}

/// [`key`] through the whole Unicode pipeline.
fn unicode_key(nick: &str) -> String {
    let mut current = key_step(nick);
    for _ in 1..MAX_KEY_ROUNDS {
        let next = key_step(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// One folding step of [`key`].
fn key_step(text: &str) -> String {
    let compat: String = text.nfkc().collect();
    let folded = caseless::default_case_fold_str(&compat);
    let skeleton: String = unicode_security::skeleton(&folded).collect();
    caseless::default_case_fold_str(&skeleton).nfkc().collect()
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
    /// The connection holding `nick`, compared by [`key`].
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
        check(nick)?;
        match self.holders.entry(key(nick)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(NickError::Taken),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(conn);
                Ok(())
            }
        }
    }

    /// Moves `conn` from `old` to `new`. A variant of one's own nick (same [`key`])
    /// is allowed; on error nothing changes.
    pub fn rename(&mut self, old: &str, new: &str, conn: ConnId) -> Result<(), NickError> {
        check(new)?;
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

    // protocol.md, "Nicknames": confusables, compatibility forms and full
    // case folding share a key.
    #[test]
    fn key_collides_confusables() {
        let same = [
            ("alice", "\u{430}lice"),                              // Cyrillic а
            ("alice", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"), // fullwidth
            ("alice", "\u{ff21}\u{ff2c}\u{ff29}\u{ff23}\u{ff25}"), // fullwidth caps
            ("alice", "ALICE"),
            ("alice", "al\u{131}ce"), // dotless ı: the skeleton maps it to i
            ("\u{3a3}", "\u{3c3}"),   // Σ σ
            ("\u{3c3}", "\u{3c2}"),   // σ ς
            ("\u{17f}am", "sam"),     // long s
            ("\u{df}", "SS"),
            ("\u{df}", "ss"),
            ("\u{fb00}", "ff"),
            ("b0b", "bob"),
            ("alice", "\u{aa}lice"), // ª: only NFKC makes it a
            ("bob", "b\u{ba}b"),     // º: only NFKC makes it o
            ("\u{c9}mile", "\u{e9}MILE"),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn key_keeps_scripts_apart() {
        let nicks = [
            "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}", // Дмитрий
            "\u{592a}\u{90ce}",                                  // 太郎
            "\u{395}\u{3bb}\u{3ad}\u{3bd}\u{3b7}",               // Ελένη
            "dmitrij",
            "taro",
            "eleni",
            "alice",
            "bob",
        ];
        for (i, a) in nicks.iter().enumerate() {
            for b in &nicks[i + 1..] {
                assert_ne!(key(a), key(b), "{a:?} vs {b:?}");
            }
        }
    }

    // The ASCII table must give what the pipeline gives: every nick of one
    // or two ASCII characters, and longer ones of the generated alphabet and
    // the confusable-prone characters.
    #[test]
    fn ascii_key_matches_the_pipeline() {
        let codes = || (0..128u8).map(char::from);
        for a in codes() {
            if a.is_ascii_alphanumeric() || a == '_' || a == '-' {
                assert!(ascii_keys()[usize::from(a as u8)].is_some(), "{a:?}");
            }
            for b in codes() {
                let nick: String = [a, b].into_iter().collect();
                assert_eq!(key(&nick), unicode_key(&nick), "{nick:?}");
            }
        }
        for nick in ["rnm0Il1|_-", "WwVvMmOo00", "Qx3vh7Tb", "cl-d_rn"] {
            assert_eq!(key(nick), unicode_key(nick), "{nick:?}");
            assert_eq!(check(nick).is_ok(), check_unicode(nick).is_ok(), "{nick:?}");
        }
    }

    #[test]
    fn ascii_check_matches_the_pipeline() {
        for code in 0..128u8 {
            let c = char::from(code);
            for nick in [c.to_string(), format!("a{c}b"), c.to_string().repeat(33)] {
                assert_eq!(check(&nick), check_unicode(&nick), "{nick:?}");
            }
        }
        assert_eq!(check(""), check_unicode(""));
    }

    #[test]
    fn key_is_idempotent() {
        // The Cherokee letter's first step ends on `m`, which the skeleton
        // then turns into `rn`: the key repeats the step until it settles.
        for nick in ["\u{13b7}", "ALICE", "\u{430}lice", "m", "\u{fb00}", "Σ"] {
            let k = key(nick);
            assert_eq!(key(&k), k, "{nick:?}");
        }
    }

    #[test]
    fn invisible_and_filler_code_points_refused() {
        for c in [
            '\u{1160}', '\u{3164}', '\u{ffa0}', '\u{115f}', '\u{200b}', '\u{ad}',
        ] {
            assert!(is_default_ignorable(c), "{c:?}");
            assert_eq!(check(&format!("alice{c}")), Err(NickError::Invisible(c)));
            assert_eq!(check(&c.to_string()), Err(NickError::Invisible(c)));
        }
        assert!(!is_default_ignorable('a'));
        assert!(!is_default_ignorable('\u{1100}'));
    }

    #[test]
    fn combining_marks_capped() {
        // Arabic beh with fathatan (U+064B), an alphabetic combining mark.
        let marks = |n| format!("\u{628}{}", "\u{64b}".repeat(n));
        assert_eq!(check(&marks(MAX_COMBINING_MARKS)), Ok(()));
        assert_eq!(
            check(&marks(MAX_COMBINING_MARKS + 1)),
            Err(NickError::MarkPileUp)
        );
        assert_eq!(check("\u{64b}\u{628}"), Err(NickError::LeadingMark));
        // Fully pointed Hebrew: shin with dagesh, shin dot and qamats.
        assert_eq!(check("\u{5e9}\u{5bc}\u{5c1}\u{5b8}"), Ok(()));
    }

    #[test]
    fn mixed_scripts_refused_single_scripts_kept() {
        for nick in [
            "\u{430}lice",                                       // Latin + Cyrillic
            "alic\u{3b5}",                                       // Latin + Greek
            "\u{414}\u{43c}\u{438}\u{442}\u{3c1}\u{438}\u{439}", // Cyrillic + Greek
        ] {
            assert_eq!(check(nick), Err(NickError::MixedScripts), "{nick:?}");
        }
        assert_eq!(scripts("\u{430}lice"), ["Cyrillic", "Latin"]);
        assert_eq!(
            NickError::MixedScripts.message("a\u{430}"),
            "invalid nick a\u{430}: mixes scripts (Latin, Cyrillic)"
        );
        for nick in [
            "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}",
            "\u{592a}\u{90ce}",
            "\u{395}\u{3bb}\u{3ad}\u{3bd}\u{3b7}",
            "\u{592a}\u{90ce}\u{305f}\u{308d}\u{30bf}\u{30ed}", // Han + Hiragana + Katakana
            "taro\u{592a}\u{90ce}",                             // Latin + Han (Japanese)
            "\u{d55c}\u{56fd}",                                 // Hangul + Han
            "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}_42-",
            "\u{ff41}lice", // fullwidth Latin is Latin
        ] {
            assert_eq!(check(nick), Ok(()), "{nick:?}");
        }
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
    fn claims_compare_by_key() {
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
        assert_eq!(
            registry.claim("\u{430}lice", b),
            Err(NickError::MixedScripts)
        );
        assert_eq!(registry.claim("\u{ff41}lice", b), Err(NickError::Taken));
        registry.rename("ALICE", "\u{ff41}lice", a).unwrap();
        registry.release("alice", a);
        assert!(registry.is_empty());
    }
}
