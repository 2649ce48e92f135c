//! The OpenAPI document, served at `/openapi.json`. Each route is written once, in its
//! handler's `#[utoipa::path]`: the routers are built from those (`utoipa_axum`), so the
//! document and the routes served are the same list.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;
use crate::{admin, promoter};

/// Every API route, with the document that describes them.
/// Every route; the promoter API's behind `cors`, for a product's pages in a browser.
pub fn routes(cors: tower_http::cors::CorsLayer) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(promoter::router().layer(cors))
        .merge(admin::router())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reftrack",
        description = "The promoter API and the admin affiliate API of reftrack (docs/api/ in the repository)."
    ),
    components(schemas(reftrack_common::envelope::ErrorEnvelope)),
    modifiers(&Security),
    tags(
        (name = "promoter", description = "For a product's users (Bearer JWT, SimpleJWT-compatible)"),
        (name = "admin", description = "For the product's staff (Bearer sk_live_ API key)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "promoter_jwt",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_live_...")
                    .build(),
            ),
        );
    }
}
