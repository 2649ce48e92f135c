//! Cross-domain attribution: a product whose landing page is on another domain cannot
//! read ingest's cookie, so the redirect hands it the click id on the landing URL, and
//! the product's backend sends it back with its conversions.

use serde_json::json;

use reftrack_testkit::python;

use crate::{Program, money};

#[tokio::test]
async fn the_click_id_on_the_landing_url_attributes_the_conversions_that_send_it_back() {
    let program = Program::start().await;
    let p = program.promoter(120).await;

    let landing = program.click(&p.code).await;
    let params: Vec<(String, String)> = landing.query_pairs().into_owned().collect();
    let click_id = params
        .iter()
        .find(|(name, _)| name == "rt_click")
        .map(|(_, id)| id.clone())
        .unwrap_or_else(|| panic!("no click id on {landing}"));
    assert!(click_id.starts_with(&format!("{}.", p.code)), "{click_id}");
    assert!(
        params.contains(&("utm_source".into(), "mail".into())),
        "{landing}"
    );

    // The product's backend, on its own domain, reports with the click id alone.
    program
        .accepted(
            json!({"event_id": "x-signup", "type": "signup", "user_id": 6001,
                          "click_id": click_id}),
        )
        .await;
    program
        .accepted(
            json!({"event_id": "x-purchase", "type": "purchase", "user_id": 6001,
                          "click_id": click_id, "amount": "100.00", "currency": "USD"}),
        )
        .await;
    let me = program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 15.0)
        .await;
    assert_eq!(money(&me["totalEarned"]), 15.0, "{me}");
    let referrals = program.referrals(&p).await;
    assert_eq!(referrals.len(), 1, "{referrals:?}");
    assert_eq!(referrals[0]["invitationMethod"], "link");
}

/// The client examples a product's developer starts from (examples/), run as shipped.
/// Multi-threaded: the examples run as blocking child processes while the services answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_examples_report_a_signup_a_purchase_and_a_refund() {
    let program = Program::start().await;
    let python_client = program.promoter(121).await;
    let curl_client = program.promoter(122).await;
    let env = program.ingest_client_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

    // The Python client, with the click id the landing URL carried.
    let landing = program.click(&python_client.code).await;
    let (_, click_id) = landing
        .query_pairs()
        .find(|(name, _)| name == "rt_click")
        .unwrap();
    let script = format!("{examples}/report_conversions.py");
    let output = python::run(&[&script, &click_id, "7001"], &env);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "signup signup-7001 accepted",
            "purchase order-7001-1 accepted",
            "refund refund-7001-1 accepted"
        ],
        "{printed}"
    );

    // The curl sequence, with the referral code.
    let output = std::process::Command::new(format!("{examples}/report_conversions.sh"))
        .args([&curl_client.code, "7002"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    // 15 % of 80.00 earned, 15 % of 30.00 reversed: 7.50 each.
    for p in [&python_client, &curl_client] {
        let me = program
            .promoter_once(p, |me| money(&me["totalEarned"]) == 7.5)
            .await;
        assert_eq!(money(&me["totalEarned"]), 7.5, "{me}");
    }
}
