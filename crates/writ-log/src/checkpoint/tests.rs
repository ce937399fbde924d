use super::*;

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed("writ.test/log", [7; 32]).unwrap()
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint { origin: "writ.test/log".into(), size, root: Hash::leaf(&size.to_be_bytes()), extensions: vec![] }
}

#[test]
fn round_trip_with_and_without_extensions() {
    let mut cp = checkpoint(42);
    assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
    cp.extensions = vec!["ext one".into(), "ext two".into()];
    let signed = SignedCheckpoint::sign(cp.clone(), &log_signer()).unwrap();
    let (opened, cosigners) = SignedCheckpoint::open(signed.note().as_bytes(), &log_signer().verifier(), &[]).unwrap();
    assert_eq!(opened.checkpoint(), &cp);
    assert!(cosigners.is_empty());
}

#[test]
fn witness_cosignatures_are_reported_and_checked() {
    let log = log_signer();
    let witness = NoteSigner::from_seed("witness.test", [8; 32]).unwrap();
    let cp = checkpoint(9);
    let signed = SignedCheckpoint::sign(cp.clone(), &log).unwrap();
    let cosigned = format!("{}{}", signed.note(), witness.signature_line(&cp.to_text()).unwrap());
    let (_, cosigners) = SignedCheckpoint::open(cosigned.as_bytes(), &log.verifier(), &[witness.verifier()]).unwrap();
    assert_eq!(cosigners, vec!["witness.test".to_string()]);
    // A witness signature over another checkpoint is a bad signature from a known key.
    let wrong = format!("{}{}", signed.note(), witness.signature_line(&checkpoint(10).to_text()).unwrap());
    assert!(SignedCheckpoint::open(wrong.as_bytes(), &log.verifier(), &[witness.verifier()]).is_err());
    // Signed only by the witness: not a checkpoint of this log.
    let only_witness = witness.sign(&cp.to_text()).unwrap();
    assert!(SignedCheckpoint::open(only_witness.as_bytes(), &log.verifier(), &[witness.verifier()]).is_err());
}

#[test]
fn wrong_key_or_origin_is_rejected() {
    let other = NoteSigner::from_seed("writ.test/log", [9; 32]).unwrap();
    let signed = SignedCheckpoint::sign(checkpoint(1), &log_signer()).unwrap();
    assert!(SignedCheckpoint::open(signed.note().as_bytes(), &other.verifier(), &[]).is_err());
    let elsewhere = NoteSigner::from_seed("other.test/log", [7; 32]).unwrap();
    assert!(SignedCheckpoint::sign(checkpoint(1), &elsewhere).is_err());
    let note = elsewhere.sign(&checkpoint(1).to_text()).unwrap();
    assert!(SignedCheckpoint::open(note.as_bytes(), &elsewhere.verifier(), &[]).is_err());
}

#[test]
fn malformed_bodies_are_rejected() {
    let root = Hash::empty().to_base64();
    let cases = [
        String::new(),
        "origin\n".into(),
        "origin\n5\n".into(),
        format!("origin\n5\n{root}"),
        format!("\n5\n{root}\n"),
        format!("origin\n05\n{root}\n"),
        format!("origin\n+5\n{root}\n"),
        format!("origin\n-1\n{root}\n"),
        format!("origin\n 5\n{root}\n"),
        format!("origin\n18446744073709551616\n{root}\n"),
        "origin\n5\nAAAA\n".into(),
        format!("origin\n5\n{}\n", hex::encode([0u8; 32])),
        format!("origin\n5\n{root}\n\n"),
        format!("origin\n5\n{root}\next\n\n"),
        format!("origin\n5\n5\n{root}\n"),
    ];
    for body in cases {
        assert!(Checkpoint::parse(&body).is_err(), "accepted {body:?}");
    }
    assert!(Checkpoint::parse(&format!("origin\n18446744073709551615\n{root}\n")).is_ok());
}

#[test]
fn duplicated_or_truncated_notes_are_rejected() {
    let log = log_signer();
    let signed = SignedCheckpoint::sign(checkpoint(3), &log).unwrap();
    let note = signed.note();
    let v = log.verifier();
    for cut in 1..note.len() {
        if note.is_char_boundary(cut) {
            assert!(SignedCheckpoint::open(&note.as_bytes()[..cut], &v, &[]).is_err(), "accepted truncation at {cut}");
        }
    }
    let (body, sig) = note.split_once("\n\n").unwrap();
    let doubled = format!("{body}\n\n{sig}{sig}");
    assert!(SignedCheckpoint::open(doubled.as_bytes(), &v, &[]).is_err());
    let big = format!("{body}\n{}\n\n{sig}", "e".repeat(70_000));
    assert!(SignedCheckpoint::open(big.as_bytes(), &v, &[]).is_err());
}
