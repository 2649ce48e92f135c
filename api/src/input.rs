//! Reading request bodies ourselves, so a malformed body gets an answer in the API's own
//! error style rather than the framework's plain text.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest("Expected a JSON object.".to_string())),
        Err(err) => Err(ApiError::BadRequest(format!("JSON parse error - {err}"))),
    }
}
