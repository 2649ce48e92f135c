//! The OpenAPI document, generated from the handlers and the response types, served at
//! `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, promoter};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reftrack",
        description = "The promoter API and the admin affiliate API of reftrack (docs/api/ in the repository)."
    ),
    paths(
        promoter::promoter,
        promoter::set_payout_method,
        promoter::recent_earnings,
        promoter::referrals,
        promoter::payouts,
        promoter::set_min_withdrawal_balance,
        promoter::withdraw,
        admin::affiliates::list,
        admin::affiliates::create,
        admin::affiliates::detail,
        admin::affiliates::update,
        admin::affiliates::approve,
        admin::affiliates::reject,
        admin::affiliates::deactivate,
        admin::affiliates::remove,
        admin::performance::performance,
        admin::payouts::list,
        admin::payouts::mark_paid,
        admin::payouts::cancel,
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

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
