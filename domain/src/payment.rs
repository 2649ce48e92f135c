//! Payout methods and the address each one needs: an email for Wise and PayPal, a
//! wallet for crypto (Bitcoin or Ethereum format), an IBAN for bank transfers.

use std::sync::LazyLock;

use iban::IbanLike;
use regex::Regex;

closed_set! {
    /// How a promoter is paid.
    PaymentMethod { Wise = "wise", Crypto = "crypto", Paypal = "paypal", Bank = "bank" }
}

static ETHEREUM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^0x[0-9a-fA-F]{40}$").expect("valid regex"));
static BITCOIN_BASE58: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[13][a-km-zA-HJ-NP-Z1-9]{25,34}$").expect("valid regex"));
static BITCOIN_BECH32: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^bc1[02-9ac-hj-np-z]{11,71}$").expect("valid regex"));

impl PaymentMethod {
    /// The key that carries the address in the admin API's payment methods.
    pub fn address_key(self) -> &'static str {
        match self {
            PaymentMethod::Crypto => "address",
            PaymentMethod::Bank => "iban",
            PaymentMethod::Wise | PaymentMethod::Paypal => "email",
        }
    }

    /// `address`, normalised, if it is one this method can pay to; else why not.
    pub fn check_address(self, address: &str) -> Result<String, String> {
        let address = address.trim();
        match self {
            PaymentMethod::Wise | PaymentMethod::Paypal => {
                if address.len() <= 254 && email_address::EmailAddress::is_valid(address) {
                    Ok(address.to_string())
                } else {
                    Err(format!("Enter a valid email address for {self}."))
                }
            }
            PaymentMethod::Crypto => {
                let lower = address.to_ascii_lowercase();
                if BITCOIN_BECH32.is_match(&lower) {
                    Ok(lower)
                } else if ETHEREUM.is_match(address) || BITCOIN_BASE58.is_match(address) {
                    Ok(address.to_string())
                } else {
                    Err(
                        "Enter a valid wallet address: Bitcoin (1…, 3…, bc1…) or Ethereum (0x…)."
                            .to_string(),
                    )
                }
            }
            PaymentMethod::Bank => address
                .parse::<iban::Iban>()
                .map(|iban| iban.electronic_str().to_string())
                .map_err(|_| "Enter a valid IBAN.".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentMethod::*;

    #[test]
    fn each_method_checks_its_address() {
        assert!(Wise.check_address("example@gmail.com").is_ok());
        assert!(Paypal.check_address("not-an-email").is_err());
        assert!(
            Crypto
                .check_address("0x52908400098527886E0F7030069857D2E4169EE7")
                .is_ok()
        );
        assert!(
            Crypto
                .check_address("1BoatSLRHtKNngkdXEeobR76b53LETtpyT")
                .is_ok()
        );
        assert_eq!(
            Crypto
                .check_address("BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ")
                .unwrap(),
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
        );
        assert!(Crypto.check_address("0x123").is_err());
        assert!(Crypto.check_address("example@gmail.com").is_err());
        assert_eq!(
            Bank.check_address("DE44 5001 0517 5407 3249 31").unwrap(),
            "DE44500105175407324931"
        );
        assert!(Bank.check_address("DE44 5001 0517 5407 3249 32").is_err());
        assert!("cheque".parse::<super::PaymentMethod>().is_err());
        assert_eq!(Bank.address_key(), "iban");
    }
}
