//! What one access token of a session is for (rule 13): the API it is sent to, named
//! by resource indicators (RFC 8707) or audiences, and the scope it carries.
//!
//! A session keeps one refresh credential and a token per [`Target`]; a refresh for a
//! target asks the token endpoint for exactly that target
//! ([`RefreshGrant::for_target`]), and its [`name`](Target::name) is how the stored
//! session tells the tokens apart, so every process sharing the session agrees on it.
//!
//! ```
//! use silent_refresh::Secret;
//! use silent_refresh_oauth2::{RefreshGrant, Target};
//!
//! let grant = RefreshGrant::new("https://auth.example.com/token", "my-app");
//! let orders = Target::resource("https://orders.example.com/").scope("orders:read");
//! let request = grant.for_target(&orders).request(Some(&Secret::new("rt-1"))).unwrap();
//! let body = std::str::from_utf8(request.body()).unwrap();
//! assert!(body.contains("&scope=orders%3Aread&resource=https%3A%2F%2Forders.example.com%2F"));
//! assert_eq!(orders.name(), "resource=https%3A%2F%2Forders.example.com%2F&scope=orders%3Aread");
//! ```

use crate::RefreshGrant;

/// What an access token is for: resource indicators, audiences and a scope. The
/// default (nothing set) is the session's own token, asked for as the grant says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Target {
    resources: Vec<String>,
    audiences: Vec<String>,
    scope: Option<String>,
}

impl Target {
    /// A token for the API named by the resource indicator `uri` (RFC 8707: an
    /// absolute URI, no fragment).
    pub fn resource(uri: impl Into<String>) -> Self {
        Self::default().and_resource(uri)
    }

    /// A token for the API with this `audience` (the logical name some servers use
    /// instead of a resource indicator).
    pub fn audience(audience: impl Into<String>) -> Self {
        Self::default().and_audience(audience)
    }

    /// A token of the session's own resource with a narrower `scope`
    /// (space-separated; at most the scope first granted, RFC 6749 §6).
    pub fn with_scope(scope: impl Into<String>) -> Self {
        Self::default().scope(scope)
    }

    /// Another resource indicator for the same token.
    #[must_use]
    pub fn and_resource(mut self, uri: impl Into<String>) -> Self {
        self.resources.push(uri.into());
        self
    }

    /// Another audience for the same token.
    #[must_use]
    pub fn and_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The scope to ask for (space-separated).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The resource indicators.
    #[must_use]
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The audiences.
    #[must_use]
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The scope, if set.
    #[must_use]
    pub fn scope_value(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Whether this is the session's own token (nothing set).
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.resources.is_empty() && self.audiences.is_empty() && self.scope.is_none()
    }

    /// The target's name in a stored session: its settings as a form-encoded string
    /// (`resource=…&audience=…&scope=…`, each in the order given), the same in every
    /// process given the same target; empty for the default.
    #[must_use]
    pub fn name(&self) -> String {
        let mut name = form_urlencoded::Serializer::new(String::new());
        for resource in &self.resources {
            name.append_pair("resource", resource);
        }
        for audience in &self.audiences {
            name.append_pair("audience", audience);
        }
        if let Some(scope) = &self.scope {
            name.append_pair("scope", scope);
        }
        name.finish()
    }
}

impl RefreshGrant {
    /// This grant asking for `target`: the target's resource indicators, audiences and
    /// scope in place of the grant's own (what the target leaves unset keeps the
    /// grant's setting). The default target gives the grant as it is.
    #[must_use]
    pub fn for_target(&self, target: &Target) -> RefreshGrant {
        let mut grant = self.clone();
        if !target.resources.is_empty() {
            grant.resources.clone_from(&target.resources);
        }
        if !target.audiences.is_empty() {
            grant.audiences.clone_from(&target.audiences);
        }
        if target.scope.is_some() {
            grant.scope.clone_from(&target.scope);
        }
        grant
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::Secret;

    fn form(grant: &RefreshGrant) -> Vec<(String, String)> {
        let request = grant.request(Some(&Secret::new("rt"))).expect("a request");
        form_urlencoded::parse(request.body())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn a_target_replaces_what_it_sets_and_keeps_the_rest() {
        let grant = RefreshGrant::new("https://auth.example.com/token", "app")
            .scope("openid orders:read billing:read")
            .audience("base");
        let billing = Target::resource("https://billing.example.com/").scope("billing:read");
        let sent = form(&grant.for_target(&billing));
        assert!(sent.contains(&("scope".into(), "billing:read".into())));
        assert!(sent.contains(&("resource".into(), "https://billing.example.com/".into())));
        assert!(
            sent.contains(&("audience".into(), "base".into())),
            "kept: {sent:?}"
        );
        assert_eq!(sent.iter().filter(|(k, _)| k == "scope").count(), 1);
        // The default target is the grant itself.
        assert_eq!(form(&grant.for_target(&Target::default())), form(&grant));
    }

    #[test]
    fn names_are_stable_and_tell_targets_apart() {
        let a = Target::resource("https://a.example/").scope("x y");
        let b = Target::resource("https://a.example/").scope("x");
        assert_eq!(a.name(), a.clone().name());
        assert_ne!(a.name(), b.name());
        assert_ne!(Target::resource("r").name(), Target::audience("r").name());
        assert_eq!(Target::default().name(), "");
        assert!(Target::default().is_default() && !a.is_default());
    }
}
