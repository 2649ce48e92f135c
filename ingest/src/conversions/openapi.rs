//! ingest's OpenAPI document, served at `/openapi.json`: the conversions API, with an
//! example of each way to report (the test suite sends every one to a running ingest).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reftrack ingest",
        description = "Signups, purchases and refunds reported server-to-server by the product's backend. \
            Each is answered 202 once the broker holds it; a repeated event_id counts once, so retrying \
            after a 503 or a timeout is always safe. See docs/integration.md in the repository."
    ),
    paths(super::accept_one, super::accept_batch),
    components(schemas(reftrack_common::envelope::ErrorEnvelope)),
    modifiers(&EventsKey),
    tags((name = "conversions", description = "Bearer sk_live_ API key with the events scope"))
)]
pub struct IngestDoc;

struct EventsKey;

impl Modify for EventsKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "events_key",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_live_...")
                    .build(),
            ),
        );
    }
}
