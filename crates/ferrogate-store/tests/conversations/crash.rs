//! A writer killed with SIGKILL mid-turn leaves only whole turns: no gaps, no duplicates, no
//! half turn. The writer is this test binary itself, re-run as a child in [`child_writer`] mode.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrogate_core::conversations::{ConversationId, ConversationStore, Item};
use ferrogate_store::Store;

use crate::fixtures::*;
use crate::harness::{TestDb, options};

const URL_VAR: &str = "FG_CRASH_CHILD_URL";
const CONV_VAR: &str = "FG_CRASH_CHILD_CONV";
/// Answer items per turn: a turn is five rows, so a kill often lands inside one.
const ANSWERS: usize = 4;

pub async fn a_killed_writer_leaves_whole_turns(db: &TestDb) {
    let a = owner("t");
    let conv = create(&db.store, &a, vec![]).await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--test-threads=1"])
        .env(URL_VAR, &db.url)
        .env(CONV_VAR, conv.id.as_str())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it write a few turns, then kill it wherever it is.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_rows(&db.url, "conversation_items").await < 10 * (1 + ANSWERS as i64) {
        assert!(Instant::now() < deadline, "the child wrote nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let reopened = Store::connect_with(&db.url, &options()).await.unwrap();
    let (after, items) = reopened.history(&a, &conv.id, ALL).await.unwrap();
    let turns = whole_turns(&items);
    assert_eq!(i64::try_from(turns).unwrap(), after.version, "every version is one whole turn");
    // The conversation takes the next turn at its version.
    reopened.append_turn(&a, turn(&a, &after, after.version, "after", "crash")).await.unwrap();
    reopened.close().await;
}

/// Checks that `items` are whole turns `q{n}`, `a{n}.0` … in order with n = 0, 1, 2, …; returns
/// how many.
fn whole_turns(items: &[Item]) -> usize {
    let got = texts(items);
    assert_eq!(got.len() % (1 + ANSWERS), 0, "a half turn landed: {} items", got.len());
    for (n, t) in got.chunks(1 + ANSWERS).enumerate() {
        let want: Vec<String> =
            std::iter::once(format!("q{n}")).chain((0..ANSWERS).map(|k| format!("a{n}.{k}"))).collect();
        assert_eq!(t, want.as_slice(), "turn {n}");
    }
    got.len() / (1 + ANSWERS)
}

/// The child: appends turns to the conversation forever (until killed). Without the variables
/// (a normal test run) it returns at once.
pub async fn child_writer() {
    let (Ok(url), Ok(conv)) = (std::env::var(URL_VAR), std::env::var(CONV_VAR)) else { return };
    let store = Store::connect_with(&url, &options()).await.unwrap();
    let a = owner("t");
    let id = ConversationId::parse(&conv).unwrap();
    loop {
        let (c, _) = store.history(&a, &id, ALL).await.unwrap();
        let n = c.version;
        let mut t = turn(&a, &c, n, &format!("q{n}"), "unused");
        t.output = (0..ANSWERS).map(|k| assistant(&format!("a{n}.{k}"))).collect();
        store.append_turn(&a, t).await.unwrap();
    }
}
