//! The dashboards' panel queries and the alert rules, read from the repository.

use super::*;

pub(crate) fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// One query of one dashboard panel.
pub(crate) struct PanelQuery {
    pub(crate) dashboard: String,
    pub(crate) panel: String,
    pub(crate) ref_id: String,
    pub(crate) expr: String,
}

impl PanelQuery {
    pub(crate) fn name(&self) -> String {
        format!("{} / {} [{}]", self.dashboard, self.panel, self.ref_id)
    }
}

/// Every query of every dashboard.
pub(crate) fn panel_queries() -> anyhow::Result<Vec<PanelQuery>> {
    let mut queries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo_file("dashboards"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for file in files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("{} parses", file.display()))?;
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                ensure!(
                    target["expr"].is_string(),
                    "a target without expr in {}",
                    file.display()
                );
                queries.push(PanelQuery {
                    dashboard: text(&dashboard["title"]),
                    panel: text(&panel["title"]),
                    ref_id: text(&target["refId"]),
                    expr: text(&target["expr"]),
                });
            }
        }
    }
    ensure!(!queries.is_empty(), "no dashboards");
    Ok(queries)
}

pub(crate) fn alert_exprs() -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml"))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)?;
    Ok(docs[0]["groups"]
        .as_vec()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_vec().into_iter().flatten())
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect())
}

/// A metric of ours in a query.
const METRIC: &str = r"\b(?:ingest|aggregator|api|http|process|reftrack)_[a-z0-9_]+";

/// Every dashboard fits an existing Grafana: its data source and the job and instance are
/// variables (never a fixed uid or job name), and every metric a query names is selected
/// by both.
pub(crate) fn assert_portable() -> anyhow::Result<()> {
    let selected = Regex::new(&format!(
        r#"{METRIC}\{{job=~"\$job", instance=~"\$instance""#
    ))?;
    let named = Regex::new(METRIC)?;
    for entry in std::fs::read_dir(repo_file("dashboards"))? {
        let file = entry?.path();
        let text = std::fs::read_to_string(&file)?;
        let dashboard: Value = serde_json::from_str(&text)?;
        let variables: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        ensure!(
            ["datasource", "job", "instance"]
                .iter()
                .all(|v| variables.contains(v)),
            "{}: variables {variables:?}",
            file.display()
        );
        let mut uids = Vec::new();
        collect_uids(&dashboard, &mut uids);
        ensure!(
            uids.iter().all(|uid| uid == "${datasource}"),
            "{}: a data source by fixed uid: {uids:?}",
            file.display()
        );
        for query in panel_queries()?
            .iter()
            .filter(|q| q.dashboard == dashboard["title"])
        {
            ensure!(
                named.find_iter(&query.expr).count() == selected.find_iter(&query.expr).count(),
                "{}: a metric without the job and instance variables: {}",
                query.name(),
                query.expr
            );
        }
    }
    Ok(())
}

fn collect_uids(value: &Value, uids: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(uid) = map.get("datasource").and_then(|d| d["uid"].as_str()) {
                uids.push(uid.to_string());
            }
            map.values().for_each(|v| collect_uids(v, uids));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_uids(v, uids)),
        _ => {}
    }
}

/// The reftrack metric families the queries name (histogram series folded into their
/// family); `up` and PromQL functions are not metrics of ours.
pub(crate) fn named_metrics(queries: &[PanelQuery], rules: &[String]) -> BTreeSet<String> {
    let name = Regex::new(METRIC).expect("regex");
    queries
        .iter()
        .map(|q| q.expr.as_str())
        .chain(rules.iter().map(String::as_str))
        .flat_map(|e| name.find_iter(e).map(|m| m.as_str()))
        .map(|m| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| m.strip_suffix(suffix))
                .unwrap_or(m)
                .to_string()
        })
        .collect()
}
