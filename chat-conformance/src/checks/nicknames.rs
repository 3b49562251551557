//! protocol.md, "Nicknames": generated nicks, valid nicks, uniqueness (by
//! confusable skeleton key), mixed scripts, and renaming with `/nick`.

use std::collections::HashSet;

use super::clients;
use crate::{ServerProcess, Target, join_all, sync};

/// Nicknames: a newcomer gets a random nick of 4 characters from
/// [A-Za-z0-9], unique case-insensitively among those connected.
pub fn nicknames_generated_and_unique(target: &Target) {
    let server = ServerProcess::start(target);
    let all = join_all(server.addr(), 20);
    let mut seen = HashSet::new();
    for client in &all {
        let nick = client.nick();
        assert!(
            nick.len() == 4 && nick.bytes().all(|b| b.is_ascii_alphanumeric()),
            "generated nick {nick:?} is not 4 characters from [A-Za-z0-9]"
        );
        assert!(
            seen.insert(nick.to_lowercase()),
            "generated nick {nick:?} is already held (case-insensitively)"
        );
    }
}

/// Nicknames: `/nick NAME` renames: the renamer gets
/// `* you are now known as NAME`, everyone else `* OLD is now known as NAME`;
/// later lines carry the new nick, the old one is free again, and any
/// alphanumeric (Unicode too), `_` or `-` nick of up to 32 characters works.
pub fn nicknames_rename_notifies_everyone(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    let old = a.nick().to_owned();
    for new in ["alice", "Zo\u{eb}_-9", &"\u{e9}".repeat(32), "alice"] {
        let was = a.nick().to_owned();
        a.send_line(&format!("/nick {new}"));
        a.expect_line(&format!("* you are now known as {new}"));
        b.expect_line(&format!("* {was} is now known as {new}"));
        c.expect_line(&format!("* {was} is now known as {new}"));
        a.set_nick(new);
    }
    // Chat now carries the new nick (sync checks `alice: marker`).
    sync(&mut a, &mut [&mut b, &mut c]);
    // The old nick is free: nobody holds it, and it can be taken.
    b.send_line(&format!("/msg {old} are you there"));
    b.expect_line(&format!("* error: no such nick {old}"));
    b.send_line(&format!("/nick {old}"));
    b.expect_line(&format!("* you are now known as {old}"));
    a.expect_line(&format!("* {} is now known as {old}", b.nick()));
    c.expect_line(&format!("* {} is now known as {old}", b.nick()));
    b.set_nick(&old);
    sync(&mut b, &mut [&mut a, &mut c]);
}

/// Nicknames: `/nick` errors, each only to the one who asked, nick
/// unchanged: `* error: usage: /nick NAME` (no name, or more than one word),
/// `* error: invalid nick X: use 1-32 letters, digits, _ or -`, and
/// `* error: nick X is already taken` (compared by key, so case variants).
pub fn nicknames_rename_errors(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    b.send_line("/nick bob");
    b.expect_line("* you are now known as bob");
    a.expect_line(&format!("* {} is now known as bob", b.nick()));
    b.set_nick("bob");

    let usage = "* error: usage: /nick NAME";
    let invalid = |x: &str| format!("* error: invalid nick {x}: use 1-32 letters, digits, _ or -");
    let long = "x".repeat(33);
    let cases = [
        ("/nick".to_owned(), usage.to_owned()),
        ("/nick   ".to_owned(), usage.to_owned()),
        ("/nick two words".to_owned(), usage.to_owned()),
        ("/nick bad.nick".to_owned(), invalid("bad.nick")),
        ("/nick a*b".to_owned(), invalid("a*b")),
        (format!("/nick {long}"), invalid(&long)),
        (
            "/nick caf\u{e9}\u{1b}".to_owned(),
            invalid("caf\u{e9}\u{fffd}"),
        ),
        (
            "/nick bob".to_owned(),
            "* error: nick bob is already taken".to_owned(),
        ),
        (
            "/nick BoB".to_owned(),
            "* error: nick BoB is already taken".to_owned(),
        ),
    ];
    for (command, reply) in &cases {
        a.send_line(command);
        a.expect_line(reply);
    }
    // B saw none of it, and A's nick is unchanged (the marker carries it).
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Nicknames: renaming to a case variant of one's own nick (same key) is
/// allowed and announced; renaming to the very same nick only confirms it to the
/// renamer, nobody else is told.
pub fn nicknames_case_variant_and_same_nick(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    let generated = a.nick().to_owned();
    let variant = if generated.to_uppercase() == generated {
        generated.to_lowercase()
    } else {
        generated.to_uppercase()
    };
    if variant != generated {
        a.send_line(&format!("/nick {variant}"));
        a.expect_line(&format!("* you are now known as {variant}"));
        b.expect_line(&format!("* {generated} is now known as {variant}"));
        a.set_nick(&variant);
    }
    a.send_line("/nick alice");
    a.expect_line("* you are now known as alice");
    b.expect_line(&format!("* {} is now known as alice", a.nick()));
    a.send_line("/nick ALICE");
    a.expect_line("* you are now known as ALICE");
    b.expect_line("* alice is now known as ALICE");
    a.set_nick("ALICE");
    a.send_line("/nick ALICE");
    a.expect_line("* you are now known as ALICE");
    // B was not told about the no-op rename.
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Nicknames: nicks are compared by their confusable skeleton key, and a
/// nick that mixes scripts is refused. While `alice` is connected,
/// `/nick аlice` (Cyrillic а) is refused (it mixes Latin and Cyrillic) and
/// `/nick ＡＬＩＣＥ` (fullwidth) is taken; a Cyrillic-only `Дмитрий` stays
/// valid. Each error only to the one who asked, nick unchanged.
pub fn nicknames_confusables_taken_and_mixed_scripts_refused(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    a.send_line("/nick alice");
    a.expect_line("* you are now known as alice");
    b.expect_line(&format!("* {} is now known as alice", a.nick()));
    a.set_nick("alice");

    let fullwidth = "\u{ff21}\u{ff2c}\u{ff29}\u{ff23}\u{ff25}";
    b.send_line(&format!("/nick {fullwidth}"));
    b.expect_line(&format!("* error: nick {fullwidth} is already taken"));
    let cyrillic_a = "\u{430}lice";
    b.send_line(&format!("/nick {cyrillic_a}"));
    b.expect_line(&format!(
        "* error: invalid nick {cyrillic_a}: mixes scripts (Cyrillic, Latin)"
    ));
    b.send_line("/nick ALICE");
    b.expect_line("* error: nick ALICE is already taken");
    // A saw none of it, and B's nick is unchanged (the marker carries it).
    sync(&mut b, &mut [&mut a]);

    let dmitrij = "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}";
    let was = b.nick().to_owned();
    b.send_line(&format!("/nick {dmitrij}"));
    b.expect_line(&format!("* you are now known as {dmitrij}"));
    a.expect_line(&format!("* {was} is now known as {dmitrij}"));
    b.set_nick(dmitrij);
    sync(&mut b, &mut [&mut a]);
}
