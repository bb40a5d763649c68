//! Which identities the configuration admits: email domains (`allowed_domains`), for every kind.

use gatehouse_domain::Email;
use gatehouse_domain::ports::ProviderError;

/// Whether `domain` is one of `allowed` (case-insensitive); an empty list allows any.
pub(crate) fn domain_allowed(allowed: &[String], domain: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| a.trim().eq_ignore_ascii_case(domain.trim()))
}

/// With `allowed_domains` set, the email must be given, vouched for and of one of them.
pub(crate) fn check_email_domain(
    allowed: &[String],
    email: Option<&Email>,
    verified: bool,
) -> Result<(), ProviderError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let email = email.ok_or(ProviderError::EmailMissing)?;
    if !verified {
        return Err(ProviderError::NotAllowed(
            "the provider does not vouch for the email, so its domain cannot be checked".to_owned(),
        ));
    }
    let domain = email.as_ref().rsplit_once('@').map_or("", |(_, domain)| domain);
    if domain_allowed(allowed, domain) {
        Ok(())
    } else {
        Err(ProviderError::NotAllowed(format!("emails of {domain} may not sign in with this provider")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid")
    }

    #[test]
    fn only_verified_emails_of_allowed_domains_pass_a_domain_restriction() {
        let allowed = vec!["Example.com".to_owned()];
        assert!(check_email_domain(&allowed, Some(&email("ada@example.com")), true).is_ok());
        assert!(matches!(
            check_email_domain(&allowed, Some(&email("ada@evil.example")), true),
            Err(ProviderError::NotAllowed(_))
        ));
        assert!(matches!(
            check_email_domain(&allowed, Some(&email("ada@example.com")), false),
            Err(ProviderError::NotAllowed(_))
        ));
        assert!(matches!(check_email_domain(&allowed, None, true), Err(ProviderError::EmailMissing)));
        assert!(check_email_domain(&[], None, false).is_ok(), "no restriction");
    }
}
