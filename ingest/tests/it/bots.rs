//! Bot detection against public corpora: every user agent the crawler-user-agents list
//! (PyPI) gives as an instance of a crawler must be flagged, and no browser of the
//! top-user-agents list (npm) may be. Both are fetched, pinned, by `scripts/stack deps`.
//! Prints the rates; the goals are at least 99 % and at most 0.1 %.

// The rates are this test's output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use ingest::verdict::BotDetector;
use reftrack_testkit::python;

fn crawler_instances() -> BTreeSet<String> {
    let out = python::run(
        &[
            "-c",
            "import crawleruseragents, json, os; \
             d = os.path.dirname(crawleruseragents.__file__); \
             print(json.dumps([i for e in json.load(open(os.path.join(d, 'crawler-user-agents.json'))) \
                                 for i in e.get('instances', [])]))",
        ],
        &[],
    );
    serde_json::from_slice::<Vec<String>>(&out.stdout)
        .unwrap()
        .into_iter()
        .collect()
}

fn browsers() -> BTreeSet<String> {
    let dir = std::env::var_os("REFTRACK_TOP_USER_AGENTS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.stack/corpora/top-user-agents-2.1.138/package/src")
        },
        PathBuf::from,
    );
    ["index.json", "desktop.json", "mobile.json"]
        .iter()
        .flat_map(|file| {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run scripts/stack deps)", path.display()));
            serde_json::from_str::<Vec<String>>(&text).unwrap()
        })
        .collect()
}

#[test]
fn crawlers_are_flagged_and_browsers_are_not() {
    let bots = BotDetector::new();
    let crawlers = crawler_instances();
    let browsers = browsers();
    assert!(
        crawlers.len() > 1000 && browsers.len() >= 100,
        "the corpora are whole"
    );
    let missed: Vec<&String> = crawlers.iter().filter(|ua| !bots.is_bot(ua)).collect();
    let flagged: Vec<&String> = browsers.iter().filter(|ua| bots.is_bot(ua)).collect();
    let caught = 100.0 * (crawlers.len() - missed.len()) as f64 / crawlers.len() as f64;
    let false_positive = 100.0 * flagged.len() as f64 / browsers.len() as f64;
    println!(
        "bots flagged: {caught:.2} % of {} crawler instances; browsers flagged: {false_positive:.2} % of {}",
        crawlers.len(),
        browsers.len()
    );
    assert!(caught >= 99.0, "missed crawlers: {missed:#?}");
    assert!(
        false_positive <= 0.1,
        "browsers taken for bots: {flagged:#?}"
    );
}
