//! A store that goes away mid-stream: the aggregator retries, and once the store is
//! back every click is applied exactly once (the batch Postgres took while ClickHouse was
//! away is not applied to Postgres again).

use std::net::SocketAddr;
use std::time::Duration;

use reftrack_testkit::TestStack;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::{Producer, affiliate, behind, config, drained, link_clicked, rollup, spawn};

/// A TCP relay to a store that the test can take down (connections refused, open ones
/// cut) and bring back on the same port.
struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    serving: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relay = Self {
            addr,
            target,
            serving: None,
        };
        relay.serving = Some(tokio::spawn(relay_on(listener, target)));
        relay
    }

    fn take_down(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }

    async fn bring_back(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serving = Some(tokio::spawn(relay_on(listener, self.target)));
    }
}

/// Relays each connection; aborting this task drops the set, which cuts them all.
async fn relay_on(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

#[tokio::test]
async fn clickhouse_away_mid_stream_then_back_loses_and_doubles_nothing() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "AWAY", "10").await;
    let store = &stack.clickhouse.url;
    let target: SocketAddr = format!(
        "{}:{}",
        store.host_str().unwrap(),
        store.port_or_known_default().unwrap()
    )
    .parse()
    .unwrap();
    let mut relay = Relay::start(target).await;
    let mut config = config(&stack);
    config.clickhouse.url = format!("http://{}", relay.addr).parse().unwrap();
    let server = spawn(&config).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.clicks_topic;
    producer.send_valid_clicks(topic, "AWAY", id, 0..300).await;
    drained(&stack, &producer.ends()).await;

    relay.take_down();
    producer
        .send_valid_clicks(topic, "AWAY", id, 300..600)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        behind(&stack, &producer.ends()).await > 0,
        "ClickHouse cannot have taken clicks while away"
    );
    relay.bring_back().await;

    drained(&stack, &producer.ends()).await;
    let stats = rollup(&stack, id).await;
    assert_eq!(stats.raw_clicks, 600);
    assert_eq!(stats.valid_clicks, 600);
    let link_clicked = link_clicked(&stack, id).await;
    assert_eq!(link_clicked, 600, "Postgres took each click once");
    server.stop().await.unwrap();
}
