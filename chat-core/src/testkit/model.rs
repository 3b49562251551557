//! The reference model: the protocol written straight from `docs/protocol.md`,
//! deliberately naive (whole lines, plain loops, no sharing).

use std::collections::BTreeSet;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory as Gc, UnicodeGeneralCategory};
use unicode_script::{Script, UnicodeScript};
use unicode_security::MixedScript;
use unicode_security::mixed_script::AugmentedScriptSet;

use crate::{Config, HELP, LINE_COST};

/// The protocol as a naive reference: who is connected under which nick,
/// and every byte each client must receive.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) config: Config,
    pub(super) clients: Vec<ModelClient>,
    pub(super) admitted: usize,
    shutting_down: bool,
    /// Clients over their output limit, disconnected in id order once the
    /// current input is handled.
    over_limit: BTreeSet<usize>,
}

#[derive(Debug, Default)]
pub(super) struct ModelClient {
    /// Set while the client is in the chat.
    pub(super) nick: Option<String>,
    /// Counted against max clients until reported closed.
    admitted: bool,
    /// Accepted, and its bytes cannot carry chat yet: not welcomed.
    connecting: bool,
    /// The server has asked to close it (or it was refused).
    pub(super) closing: bool,
    pub(super) too_slow: bool,
    /// Every byte the server must have queued for it, in order.
    pub(super) expected: Vec<u8>,
    /// Queued or unwritten bytes, as the server counts them: each line its
    /// bytes and `LINE_COST`, until the batch it was taken in is written.
    pub(super) pending: usize,
    /// What every line queued for it cost, in all.
    sent: usize,
    /// The current unterminated line.
    line: Vec<u8>,
    /// The current line was reported too long; skip to its LF.
    discarding: bool,
}

impl Model {
    pub(super) fn new(config: Config) -> Model {
        Model {
            config,
            clients: Vec::new(),
            admitted: 0,
            shutting_down: false,
            over_limit: BTreeSet::new(),
        }
    }

    fn joined(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.nick.as_deref().map(|n| (i, n)))
    }

    fn send(&mut self, to: usize, line: &str) {
        let limit = self.config.max_queue;
        let client = &mut self.clients[to];
        let cost = line.len() + 1 + LINE_COST;
        if client.pending + cost > limit {
            if client.nick.is_some() {
                self.over_limit.insert(to);
            }
            return;
        }
        client.pending += cost;
        client.sent += cost;
        client.expected.extend_from_slice(line.as_bytes());
        client.expected.push(b'\n');
    }

    fn send_others(&mut self, from: usize, line: &str) {
        let others: Vec<usize> = self
            .joined()
            .map(|(i, _)| i)
            .filter(|&i| i != from)
            .collect();
        for to in others {
            self.send(to, line);
        }
    }

    /// `nick` is the generated nick the server announced, if it admitted the
    /// client.
    pub(super) fn connect(&mut self, nick: Option<String>) {
        self.accept();
        self.ready(self.clients.len() - 1, nick);
    }

    /// A connection accepted whose bytes cannot carry chat yet: counted,
    /// or refused, now; welcomed at [`Model::ready`].
    pub(super) fn accept(&mut self) {
        let index = self.clients.len();
        self.clients.push(ModelClient::default());
        let refusal = if self.shutting_down {
            Some("* server shutting down")
        } else if self.admitted >= self.config.max_clients {
            Some("* error: server full")
        } else {
            None
        };
        if let Some(text) = refusal {
            self.send(index, text);
            self.clients[index].closing = true;
            return;
        }
        self.admitted += 1;
        let client = &mut self.clients[index];
        client.admitted = true;
        client.connecting = true;
    }

    /// Client `index` can chat now; `nick` is the generated nick the
    /// server announced, if it welcomed the client. Nothing for a client
    /// not accepted with [`Model::accept`], or refused, or closed.
    pub(super) fn ready(&mut self, index: usize, nick: Option<String>) {
        if !std::mem::take(&mut self.clients[index].connecting) {
            assert_eq!(nick, None, "a client not connecting must not join");
            return;
        }
        let nick = nick.expect("an admitted client must join");
        assert!(
            self.holder(&nick).is_none(),
            "generated nick {nick} is already taken"
        );
        self.clients[index].nick = Some(nick.clone());
        let online = self.joined().count();
        let users = if online == 1 { "user" } else { "users" };
        self.send(
            index,
            &format!("* welcome, you are {nick}; {online} {users} online; type /help for commands"),
        );
        self.send_others(index, &format!("* {nick} joined"));
        self.disconnect_over_limit();
    }

    fn holder(&self, nick: &str) -> Option<usize> {
        let wanted = reference_nick_key(nick);
        self.joined()
            .find(|(_, n)| reference_nick_key(n) == wanted)
            .map(|(i, _)| i)
    }

    pub(super) fn bytes(&mut self, index: usize, bytes: &[u8]) {
        let max = self.config.max_line;
        for &byte in bytes {
            if self.clients[index].nick.is_none() {
                return;
            }
            let client = &mut self.clients[index];
            if byte == b'\n' {
                let mut line = std::mem::take(&mut client.line);
                if std::mem::take(&mut client.discarding) {
                    continue;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    self.too_long(index);
                } else {
                    self.line(index, &line);
                }
                self.disconnect_over_limit();
                continue;
            }
            if client.discarding {
                continue;
            }
            client.line.push(byte);
            // Over the limit even if a CR and LF come next: report it now.
            let len = client.line.len();
            if len > max + 1 || (len == max + 1 && byte != b'\r') {
                client.line.clear();
                client.discarding = true;
                self.too_long(index);
                self.disconnect_over_limit();
            }
        }
    }

    fn too_long(&mut self, index: usize) {
        let max = self.config.max_line;
        self.send(
            index,
            &format!("* error: line too long (max {max} bytes), discarded"),
        );
    }

    pub(super) fn eof(&mut self, index: usize) {
        if std::mem::take(&mut self.clients[index].connecting) {
            // Never in the chat: closed with nothing said.
            self.clients[index].closing = true;
            return;
        }
        if self.clients[index].nick.is_none() {
            return;
        }
        let client = &mut self.clients[index];
        let mut line = std::mem::take(&mut client.line);
        if !std::mem::take(&mut client.discarding) && !line.is_empty() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line(index, &line);
            self.disconnect_over_limit();
        }
        self.leave(index, None, true);
        self.disconnect_over_limit();
    }

    pub(super) fn closed(&mut self, index: usize) {
        if self.clients[index].nick.is_some() {
            self.leave(index, None, false);
            self.disconnect_over_limit();
        }
        let client = &mut self.clients[index];
        client.closing = true;
        client.connecting = false;
        if std::mem::take(&mut client.admitted) {
            self.admitted -= 1;
        }
    }

    /// The driver has written what releases `released` of what client
    /// `index` was counted (see `Client::released_cost`).
    pub(super) fn released(&mut self, index: usize, released: usize) {
        let client = &mut self.clients[index];
        if !client.too_slow {
            client.pending = client.sent.saturating_sub(released);
        }
    }

    pub(super) fn shutdown(&mut self) {
        if std::mem::replace(&mut self.shutting_down, true) {
            return;
        }
        let joined: Vec<usize> = self.joined().map(|(i, _)| i).collect();
        for index in joined {
            self.send(index, "* server shutting down");
            let client = &mut self.clients[index];
            client.nick = None;
            client.closing = true;
        }
        for index in 0..self.clients.len() {
            if std::mem::take(&mut self.clients[index].connecting) {
                self.send(index, "* server shutting down");
                self.clients[index].closing = true;
            }
        }
        self.over_limit.clear();
    }

    /// The client leaves; `why` is the text shown in parentheses.
    fn leave(&mut self, index: usize, why: Option<&str>, close: bool) {
        let Some(nick) = self.clients[index].nick.take() else {
            return;
        };
        self.clients[index].closing |= close;
        let notice = match why {
            Some(why) => format!("* {nick} left ({why})"),
            None => format!("* {nick} left"),
        };
        self.send_others(index, &notice);
    }

    fn disconnect_over_limit(&mut self) {
        while let Some(index) = self.over_limit.pop_first() {
            if self.clients[index].nick.is_some() {
                let client = &mut self.clients[index];
                client.too_slow = true;
                client.pending = 0;
                self.leave(index, Some("too slow"), true);
            }
        }
    }

    /// One complete line, CR already removed.
    fn line(&mut self, index: usize, raw: &[u8]) {
        let text = reference_sanitize(raw);
        if text.is_empty() {
            return;
        }
        let nick = self.clients[index]
            .nick
            .clone()
            .expect("only joined clients send");
        if let Some(rest) = text.strip_prefix("//") {
            return self.send_others(index, &format!("{nick}: /{rest}"));
        }
        let Some(command) = text.strip_prefix('/') else {
            return self.send_others(index, &format!("{nick}: {text}"));
        };
        let words: Vec<&str> = command
            .split([' ', '\t'])
            .filter(|w| !w.is_empty())
            .collect();
        let name = command.split([' ', '\t']).next().unwrap_or_default();
        // The text after the first word and the gap that follows it.
        let after = |text: &str| -> String {
            match text.find([' ', '\t']) {
                Some(at) => text[at..].trim_start_matches([' ', '\t']).to_owned(),
                None => String::new(),
            }
        };
        let args = after(command);
        match name.to_ascii_lowercase().as_str() {
            "nick" => {
                if words.len() != 2 {
                    return self.send(index, "* error: usage: /nick NAME");
                }
                let new = words[1];
                if new == nick {
                    return self.send(index, &format!("* you are now known as {new}"));
                }
                if let Some(why) = reference_nick_refusal(new) {
                    return self.send(index, &format!("* error: invalid nick {new}: {why}"));
                }
                if self.holder(new).is_some_and(|holder| holder != index) {
                    return self.send(index, &format!("* error: nick {new} is already taken"));
                }
                self.clients[index].nick = Some(new.to_owned());
                self.send(index, &format!("* you are now known as {new}"));
                self.send_others(index, &format!("* {nick} is now known as {new}"));
            }
            "me" if args.is_empty() => self.send(index, "* error: usage: /me TEXT"),
            "me" => self.send_others(index, &format!("* {nick} {args}")),
            "msg" => {
                let target = words.get(1).copied().unwrap_or_default();
                let text = after(&args);
                if target.is_empty() || text.is_empty() {
                    return self.send(index, "* error: usage: /msg NICK TEXT");
                }
                match self.holder(target) {
                    Some(to) => self.send(to, &format!("*{nick}* {text}")),
                    None => self.send(index, &format!("* error: no such nick {target}")),
                }
            }
            "who" => {
                let mut nicks: Vec<String> = self.joined().map(|(_, n)| n.to_owned()).collect();
                nicks.sort_by_key(|n| (n.to_lowercase(), n.clone()));
                for line in reference_who(&nicks, self.config.max_queue / 2) {
                    self.send(index, &line);
                }
            }
            "help" => {
                for line in HELP {
                    self.send(index, &format!("* {line}"));
                }
            }
            "quit" => {
                self.send(index, "* bye");
                let why = (!args.is_empty()).then_some(args.as_str());
                self.leave(index, why, true);
            }
            _ => self.send(
                index,
                &format!("* error: unknown command /{name}, try /help"),
            ),
        }
    }
}

/// protocol.md, "Commands", `/who`, written out plainly: the reply to a
/// `/who` listing the sorted `nicks`, within `budget`.
pub fn reference_who(nicks: &[String], budget: usize) -> Vec<String> {
    let n = nicks.len();
    let users = if n == 1 { "user" } else { "users" };
    let cost = |lines: &[String]| -> usize { lines.iter().map(|l| l.len() + 1 + LINE_COST).sum() };
    let more = format!("* and {n} more");
    // Lists the first `k` nicks, lines filled up to 512 bytes with the LF.
    let listing = |k: usize| -> Vec<String> {
        let mut lines = vec![format!("* {n} {users} online:")];
        for (i, nick) in nicks[..k].iter().enumerate() {
            let last = lines.len() - 1;
            let sep = if i == 0 { " " } else { ", " };
            if lines[last].len() + sep.len() + nick.len() < 512 {
                lines[last] = format!("{}{sep}{nick}", lines[last]);
            } else {
                lines.push(format!("* {nick}"));
            }
        }
        lines
    };
    // As many as fit with room for the last line, in order.
    let mut k = 0;
    while k < n && cost(&listing(k + 1)) + more.len() + 1 + LINE_COST <= budget {
        k += 1;
    }
    let mut lines = listing(k);
    if k < n {
        lines.push(format!("* and {} more", n - k));
    }
    lines
}

/// protocol.md, "Sanitizing", rule 2, written out plainly: what becomes
/// U+FFFD wherever it stands.
pub fn reference_forbidden(c: char) -> bool {
    let gc = c.general_category();
    (gc == Gc::Control && c != '\t')
        || (gc == Gc::Format && c != '\u{200c}' && c != '\u{200d}')
        || gc == Gc::LineSeparator
        || gc == Gc::ParagraphSeparator
        || HANGUL_FILLERS.contains(&c)
}

/// The Hangul fillers protocol.md, "Sanitizing", rule 2 names.
pub(super) const HANGUL_FILLERS: [char; 4] = ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}'];

/// A combining mark: general category Mn, Mc or Me.
pub(super) fn is_mark(c: char) -> bool {
    matches!(
        c.general_category(),
        Gc::NonspacingMark | Gc::SpacingMark | Gc::EnclosingMark
    )
}

/// Rule 3: neither whitespace, nor replaced by rule 2, nor a joiner.
fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !reference_forbidden(c) && c != '\u{200c}' && c != '\u{200d}'
}

/// protocol.md, "Sanitizing", written out plainly, one character at a time,
/// each rule looking at the text of rule 1.
pub fn reference_sanitize(raw: &[u8]) -> String {
    let chars: Vec<char> = String::from_utf8_lossy(raw).chars().collect();
    let mut text = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let before = if i == 0 { None } else { Some(chars[i - 1]) };
        let after = chars.get(i + 1).copied();
        if reference_forbidden(c) {
            text.push('\u{fffd}');
        } else if c == '\u{200c}' || c == '\u{200d}' {
            let kept = before.is_some_and(is_visible)
                && after.is_some_and(|a| is_visible(a) && !is_mark(a));
            text.push(if kept { c } else { '\u{fffd}' });
        } else if is_mark(c) {
            // How many marks in a row end here, this one included.
            let run = chars[..=i]
                .iter()
                .rev()
                .take_while(|&&m| is_mark(m))
                .count();
            if run <= 4 {
                text.push(c);
            }
        } else {
            text.push(c);
        }
    }
    text.trim_end().to_owned()
}

/// protocol.md, "Nicknames": why `nick` is not a valid nick (the text after
/// `invalid nick NICK: `), or `None` if it is one. Written out plainly from
/// the rules, in their order, with the Unicode crates' public functions.
pub fn reference_nick_refusal(nick: &str) -> Option<String> {
    let chars: Vec<char> = nick.chars().collect();
    let usage = "use 1-32 letters, digits, _ or -".to_owned();
    if chars.is_empty() || chars.len() > 32 {
        return Some(usage);
    }
    for &c in &chars {
        // Default_Ignorable_Code_Point: what the skeleton drops.
        if unicode_security::skeleton(&c.to_string()).count() == 0 {
            return Some(format!("holds invisible character U+{:04X}", u32::from(c)));
        }
    }
    if !chars
        .iter()
        .all(|&c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Some(usage);
    }
    for (i, &c) in chars.iter().enumerate() {
        if !unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        if i == 0 {
            return Some("starts with a combining mark".to_owned());
        }
        let run = chars[..=i]
            .iter()
            .rev()
            .take_while(|&&m| unicode_normalization::char::is_combining_mark(m))
            .count();
        if run > 3 {
            return Some("more than 3 combining marks on one character".to_owned());
        }
    }
    let not_latin: String = chars
        .iter()
        .filter(|c| !c.script_extension().contains_script(Script::Latin))
        .collect();
    let cjk = AugmentedScriptSet::for_str(&not_latin);
    let highly_restrictive = nick.is_single_script() || cjk.hanb || cjk.jpan || cjk.kore;
    if !highly_restrictive {
        // Only the naming of the scripts is the crate's own (nick::scripts):
        // whether the nick is refused is decided above, independently.
        let names = crate::nick::scripts(nick);
        return Some(format!("mixes scripts ({})", names.join(", ")));
    }
    None
}

/// protocol.md, "Nicknames": the comparison key of `nick`, the step
/// NFKC, full case folding, skeleton, full case folding, NFKC repeated
/// until nothing changes (at most 8 times).
pub fn reference_nick_key(nick: &str) -> String {
    let mut text = nick.to_owned();
    for _ in 0..8 {
        let nfkc: String = text.nfkc().collect();
        let folded = caseless::default_case_fold_str(&nfkc);
        let skeleton: String = unicode_security::skeleton(&folded).collect();
        let next: String = caseless::default_case_fold_str(&skeleton).nfkc().collect();
        if next == text {
            break;
        }
        text = next;
    }
    text
}
