use super::lines::{Line, read_line};
use serde_json::json;

use super::*;
use crate::control::Denial;

#[test]
fn default_server_names() {
    assert_eq!(server_name("/usr/bin/Server-FS.py"), "server-fs");
    assert_eq!(server_name("npx"), "npx");
    assert_eq!(server_name("./my tool"), "my-tool");
    assert_eq!(server_name("mcp_server.v2.js"), "mcp_server-v2");
    assert!(valid_server_name("fs"));
    for bad in ["", "FS", "a/b", "a b", "é"] {
        assert!(!valid_server_name(bad), "{bad}");
    }
}

#[tokio::test]
async fn lines_are_bounded_and_stay_in_step() {
    let input: &[u8] = b"one\r\n\nxxxxxxxxxxxx\ntwo\nlast";
    let mut r = tokio::io::BufReader::with_capacity(4, input);
    assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Data(b"one".to_vec()));
    assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Data(Vec::new()));
    assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::TooLong(12));
    assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Data(b"two".to_vec()));
    assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Data(b"last".to_vec()));
    assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::Eof);
}

#[test]
fn deny_shapes() {
    let d = Denial {
        reason: "policy.denied".into(),
        reasons: vec!["policy.denied".into()],
        detail: "no permit".into(),
        decision: Some("w-1".into()),
        log_index: Some(7),
    };
    let r = answer::refusal(&json!(3), "deny", &d, false);
    assert_eq!(
        r,
        json!({"jsonrpc": "2.0", "id": 3, "result": {
            "content": [{"type": "text", "text": "writ denied this call: policy.denied: no permit"}],
            "isError": true,
            "structuredContent": {"writ": {"outcome": "deny", "reason": "policy.denied", "reasons": ["policy.denied"],
                "detail": "no permit", "decision": "w-1", "log_index": 7}}}})
    );
    let e = answer::refusal(&json!("a"), "deny", &d, true);
    assert_eq!(e["error"]["code"], -32001);
    assert_eq!(e["error"]["message"], "writ denied this call: policy.denied: no permit");
    assert_eq!(e["error"]["data"]["decision"], "w-1");
    assert_eq!(e["id"], "a");
}
