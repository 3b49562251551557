//! The shared black-box conformance suite (`chat-conformance`) against the
//! `chat-std` binary: one test per protocol rule, named after its
//! protocol.md section.

chat_conformance::conformance_suite!(env!("CARGO_BIN_EXE_chat-std"));
