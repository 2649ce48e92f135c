//! Payout methods and the address each one needs: an email for Wise and PayPal, a
//! wallet for crypto (Bitcoin or Ethereum format), an IBAN for bank transfers.

use std::sync::LazyLock;

use iban::IbanLike;
use regex::Regex;

pub const METHODS: [&str; 4] = ["wise", "crypto", "paypal", "bank"];

static ETHEREUM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^0x[0-9a-fA-F]{40}$").expect("valid regex"));
static BITCOIN_BASE58: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[13][a-km-zA-HJ-NP-Z1-9]{25,34}$").expect("valid regex"));
static BITCOIN_BECH32: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^bc1[02-9ac-hj-np-z]{11,71}$").expect("valid regex"));

/// The address for `method`, normalised, or why it is not one.
pub fn check_address(method: &str, address: &str) -> Result<String, String> {
    let address = address.trim();
    match method {
        "wise" | "paypal" => {
            if address.len() <= 254 && email_address::EmailAddress::is_valid(address) {
                Ok(address.to_string())
            } else {
                Err(format!("Enter a valid email address for {method}."))
            }
        }
        "crypto" => {
            let lower = address.to_ascii_lowercase();
            if ETHEREUM.is_match(address)
                || BITCOIN_BASE58.is_match(address)
                || BITCOIN_BECH32.is_match(&lower)
            {
                Ok(if lower.starts_with("bc1") {
                    lower
                } else {
                    address.to_string()
                })
            } else {
                Err(
                    "Enter a valid wallet address: Bitcoin (1…, 3…, bc1…) or Ethereum (0x…)."
                        .to_string(),
                )
            }
        }
        "bank" => address
            .parse::<iban::Iban>()
            .map(|iban| iban.electronic_str().to_string())
            .map_err(|_| "Enter a valid IBAN.".to_string()),
        _ => Err(format!("\"{method}\" is not a valid choice.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_checks_its_address() {
        assert!(check_address("wise", "example@gmail.com").is_ok());
        assert!(check_address("paypal", "not-an-email").is_err());
        assert!(check_address("crypto", "0x52908400098527886E0F7030069857D2E4169EE7").is_ok());
        assert!(check_address("crypto", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT").is_ok());
        assert_eq!(
            check_address("crypto", "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ").unwrap(),
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
        );
        assert!(check_address("crypto", "0x123").is_err());
        assert!(check_address("crypto", "example@gmail.com").is_err());
        assert_eq!(
            check_address("bank", "DE44 5001 0517 5407 3249 31").unwrap(),
            "DE44500105175407324931"
        );
        assert!(check_address("bank", "DE44 5001 0517 5407 3249 32").is_err());
        assert!(check_address("cheque", "x").is_err());
    }
}
