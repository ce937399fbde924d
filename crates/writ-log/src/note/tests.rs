use super::*;

fn signer(name: &str, byte: u8) -> NoteSigner {
    NoteSigner::from_seed(name, [byte; 32]).unwrap()
}

#[test]
fn sign_then_verify_round_trips() {
    let s = signer("example.com/log", 1);
    let note = s.sign("hello\nworld\n").unwrap();
    let parsed = Note::parse(note.as_bytes()).unwrap();
    assert_eq!(parsed.text(), "hello\nworld\n");
    let v = s.verifier();
    assert_eq!(parsed.verify(std::slice::from_ref(&v)).unwrap(), vec![&v]);
}

#[test]
fn keys_round_trip_through_their_encodings() {
    // Keys whose base64 holds '+' (found by `writ log demo`: a key was unreadable).
    for byte in 0..=40u8 {
        let s = signer("example.com/log", byte);
        assert_eq!(NoteSigner::from_private_key(&s.to_private_key()).unwrap().verifier(), s.verifier(), "seed {byte}");
        assert_eq!(NoteVerifier::from_vkey(&s.verifier().to_vkey()).unwrap(), s.verifier(), "seed {byte}");
    }
    let s = signer("example.com/log", 2);
    let again = NoteSigner::from_private_key(&s.to_private_key()).unwrap();
    assert_eq!(again.verifier(), s.verifier());
    let vkey = s.verifier().to_vkey();
    assert_eq!(NoteVerifier::from_vkey(&vkey).unwrap(), s.verifier());
    // A vkey whose ID does not match its key is refused.
    let mut parts: Vec<&str> = vkey.split('+').collect();
    parts[1] = "00000000";
    assert!(NoteVerifier::from_vkey(&parts.join("+")).is_err());
}

#[test]
fn golden_key_id_matches_the_go_note_package_vector() {
    // From golang.org/x/mod/sumdb/note's documentation example.
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let v = NoteVerifier::from_vkey(vkey).unwrap();
    assert_eq!(v.key_id(), 0xc74f20a3);
    assert_eq!(v.to_vkey(), vkey);
    let note = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n\
                \n\
                \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    let parsed = Note::parse(note.as_bytes()).unwrap();
    parsed.verify(&[v]).unwrap();
}

#[test]
fn unknown_keys_are_ignored_but_a_bad_known_signature_fails() {
    let log = signer("log", 3);
    let other = signer("witness", 4);
    let text = "body\n";
    let note = format!("{}{}", log.sign(text).unwrap(), other.signature_line(text).unwrap());
    let parsed = Note::parse(note.as_bytes()).unwrap();
    // Only the log key known: the witness line is ignored.
    parsed.verify(&[log.verifier()]).unwrap();
    // A forged witness line with the witness's name and ID.
    let forged = signer("witness", 5).signature_line(text).unwrap();
    let mut raw = B64.decode(forged.trim_end().rsplit(' ').next().unwrap()).unwrap();
    raw[..4].copy_from_slice(&other.verifier().key_id().to_be_bytes());
    let forged_line = format!("\u{2014} witness {}\n", B64.encode(raw));
    let bad = format!("{}{}", log.sign(text).unwrap(), forged_line);
    let parsed = Note::parse(bad.as_bytes()).unwrap();
    assert!(matches!(parsed.verify(&[log.verifier(), other.verifier()]), Err(Error::NoteSignature(_))));
    // No known key at all.
    assert!(Note::parse(note.as_bytes()).unwrap().verify(&[signer("x", 9).verifier()]).is_err());
}

#[test]
fn wrong_key_and_altered_text_fail() {
    let log = signer("log", 3);
    let impostor = signer("log", 7);
    let note = log.sign("size\n").unwrap();
    assert!(Note::parse(note.as_bytes()).unwrap().verify(&[impostor.verifier()]).is_err());
    let altered = note.replacen("size", "sizf", 1);
    assert!(Note::parse(altered.as_bytes()).unwrap().verify(&[log.verifier()]).is_err());
}

#[test]
fn malformed_notes_are_rejected() {
    let log = signer("log", 3);
    let good = log.sign("a\nb\n").unwrap();
    let line = log.signature_line("a\nb\n").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        ("a\nb\n".into(), "no signature block"),
        ("a\nb\n\n".into(), "no signatures"),
        (good[..good.len() - 1].to_string(), "truncated final newline"),
        (good[..good.len() - 20].to_string(), "truncated signature"),
        (good.replace('\u{2014}', "-"), "hyphen instead of em dash"),
        (good.replace("\u{2014} log ", "\u{2014} log  "), "double space"),
        (format!("a\x07\nb\n\n{line}"), "control character"),
        (format!("a\nb\n\n{line}{line}"), "duplicated signature line"),
        (format!("a\nb\n\n\u{2014} lo+g {}", &line[6..]), "plus in key name"),
        ("a\nb\n\n\u{2014} log AAAA\n".to_string(), "short signature"),
        ("a\nb\n\n\u{2014} log !!!!\n".to_string(), "not base64"),
        (format!("a\nb\n\n{line}garbage\n"), "trailing garbage line"),
        (format!("{}\n\n{line}", "x".repeat(MAX_NOTE_LEN)), "over-long"),
    ];
    for (input, what) in cases {
        assert!(Note::parse(input.as_bytes()).is_err(), "accepted: {what}");
    }
    assert!(Note::parse(&[0xff, 0xfe, b'\n', b'\n']).is_err(), "accepted invalid UTF-8");
    let many: String =
        (0..=MAX_SIGNATURES).map(|i| signer(&format!("k{i}"), 1).signature_line("a\n").unwrap()).collect();
    assert!(Note::parse(format!("a\n\n{many}").as_bytes()).is_err(), "accepted too many signatures");
}

#[test]
fn notes_we_sign_open_with_an_independent_implementation() {
    // The `signed_note` crate (a port of Go's note package) verifies our notes.
    let log = signer("writ.test/log", 11);
    let note = log.sign("writ.test/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let vkey = log.verifier().to_vkey();
    let verifier = signed_note::StandardVerifier::new(&vkey).unwrap();
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let verifiers = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    let (verified, _unverified) = parsed.verify(&verifiers).unwrap();
    assert_eq!(verified.len(), 1);
}

mod hostile {
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::{Checkpoint, SignedCheckpoint};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic any parser of untrusted input.
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Note::parse(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = Checkpoint::parse(&text);
            let _ = NoteVerifier::from_vkey(&text);
            let _ = NoteSigner::from_private_key(&text);
            let v = signer("writ.test/log", 1).verifier();
            let _ = SignedCheckpoint::open(&bytes, &v, &[]);
        }

        /// Mutations of a valid signed checkpoint either fail or still say the same thing.
        #[test]
        fn mutated_checkpoints_fail_or_are_unchanged(pos in any::<usize>(), byte in any::<u8>()) {
            let s = signer("writ.test/log", 1);
            let cp = Checkpoint { origin: "writ.test/log".into(), size: 12345, root: crate::Hash::leaf(b"r"), extensions: vec![] };
            let signed = SignedCheckpoint::sign(cp.clone(), &s).unwrap();
            let mut bytes = signed.note().as_bytes().to_vec();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok((opened, _)) = SignedCheckpoint::open(&bytes, &s.verifier(), &[]) {
                prop_assert_eq!(opened.checkpoint(), &cp);
            }
        }
    }
}
