//! `make soak` in small (50 tasks) inside `make test`: the real binaries
//! under duplicates, out-of-order events, dying workers, failing receivers
//! and SIGKILLs, checked from the stores and receivers; nothing lost.

use morag_tests::soak::{run, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_under_faults_lose_nothing() {
    let binaries = morag_tests::debug_binary("morag-recorder")
        .parent()
        .expect("target dir")
        .to_path_buf();
    let report = run(SoakConfig::new(morag_tests::endpoint(), binaries, 50))
        .await
        .expect("soak ran");
    let markdown = report.markdown();
    println!("{markdown}");
    assert!(report.settled_after.is_some(), "the system did not settle:\n{markdown}");
    assert_eq!(report.lost(), 0, "{markdown}");
    let v = &report.verdict;
    // the faults happened: duplicates sent, kills survived, deliveries retried, stalls marked
    assert!(v.copies_sent > v.events_sent, "{markdown}");
    assert!(report.kills.iter().map(|(_, k, _)| k).sum::<usize>() >= 2, "{markdown}");
    // (a superseded progress is never attempted)
    let superseded = v.delivery_states.get("superseded").copied().unwrap_or(0);
    assert!(v.attempts > v.deliveries - superseded, "{markdown}");
    assert!(v.stalls >= 1, "{markdown}");
}
