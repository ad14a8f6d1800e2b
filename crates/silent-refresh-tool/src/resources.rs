//! `oauth2_client --resource URL [--indicator URI]`, repeatable (issue 22, rule 13):
//! one session, several APIs. Each `--indicator` applies to the `--resource` before
//! it: that API's RFC 8707 resource indicator, which its token is asked for with; a
//! resource without one gets the session's default token. Requests go to the
//! resources in turn, through one client (one agent) that gives each API the token of
//! its own key (`allow_origin_for` / `allow_url_for`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use silent_refresh_oauth2::Target;

use crate::probe;

/// One `--resource`, with its `--indicator` if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The URL to `GET`.
    pub url: String,
    /// Its resource indicator (`None`: the session's default token).
    pub indicator: Option<String>,
}

impl Resource {
    /// A resource with the default token.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            indicator: None,
        }
    }

    /// The key its token is for.
    #[must_use]
    pub fn target(&self) -> Target {
        self.indicator
            .as_deref()
            .map_or_else(Target::default, Target::resource)
    }
}

/// Takes every `--resource` and `--indicator` (also as `--name=value`) out of `args`,
/// in order: the other arguments, and the resources.
///
/// # Errors
///
/// An option without its value, an `--indicator` before any `--resource`, or two for
/// the same resource.
pub fn extract(
    args: impl IntoIterator<Item = String>,
) -> Result<(Vec<String>, Vec<Resource>), String> {
    let (mut rest, mut resources) = (Vec::new(), Vec::<Resource>::new());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        if name != "--resource" && name != "--indicator" {
            rest.push(arg);
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("{name} needs a value; see --help"))?,
        };
        if name == "--resource" {
            resources.push(Resource::new(value));
            continue;
        }
        let Some(last) = resources.last_mut() else {
            return Err(
                "--indicator applies to the --resource before it: give --resource URL first"
                    .to_owned(),
            );
        };
        if last.indicator.is_some() {
            return Err(format!(
                "--resource {} has two --indicator; give one for each --resource",
                last.url
            ));
        }
        last.indicator = Some(value);
    }
    Ok((rest, resources))
}

/// The resources' URLs, handed out in turn.
#[derive(Debug)]
pub struct Rotation {
    urls: Vec<Arc<str>>,
    next: AtomicUsize,
}

impl Rotation {
    /// The URLs of `resources` (at least one).
    #[must_use]
    pub fn new(resources: &[Resource]) -> Self {
        Self {
            urls: resources
                .iter()
                .map(|r| Arc::from(r.url.as_str()))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next URL.
    #[must_use]
    pub fn next(&self) -> Arc<str> {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len().max(1);
        self.urls.get(at).cloned().unwrap_or_else(|| Arc::from(""))
    }
}

/// How a resource is routed: a resource without an indicator gets the default token
/// on its whole origin (as a single `--resource` always did); one with an indicator
/// gets its key's token under its URL (the longest prefix wins).
enum Routed<S> {
    Origin(String, S),
    Url(String, S),
}

/// Each resource's route, with `for_target` giving a key's source.
fn routes<S: Clone, E: std::fmt::Display>(
    source: &S,
    resources: &[Resource],
    for_target: impl Fn(&S, Target) -> Result<S, E>,
) -> Result<Vec<Routed<S>>, String> {
    resources
        .iter()
        .map(|resource| match &resource.indicator {
            None => Ok(Routed::Origin(
                probe::origin_of(&resource.url)?,
                source.clone(),
            )),
            Some(_) => {
                let keyed = for_target(source, resource.target()).map_err(|e| e.to_string())?;
                Ok(Routed::Url(resource.url.clone(), keyed))
            }
        })
        .collect()
}

/// One tokio client for every resource, each with its key's token.
///
/// # Errors
///
/// A resource that is not an http(s) URL the client accepts, or a refresher that
/// cannot ask for a resource indicator.
pub fn tokio_client(
    source: silent_refresh_tokio::TokenSource,
    resources: &[Resource],
) -> Result<silent_refresh_tokio::AuthorizedClient, String> {
    let routed = routes(&source, resources, |s, target| s.for_target(target))?;
    let mut builder = silent_refresh_tokio::AuthorizedClient::builder(source);
    for route in routed {
        builder = match route {
            Routed::Origin(origin, source) => builder.allow_origin_for(origin, source),
            Routed::Url(url, source) => builder.allow_url_for(url, source),
        };
    }
    builder.build().map_err(|e| e.to_string())
}

/// One ureq middleware for every resource, each with its key's token.
///
/// # Errors
///
/// As [`tokio_client`].
pub fn ureq_auth(
    source: silent_refresh_ureq::TokenSource,
    resources: &[Resource],
) -> Result<silent_refresh_ureq::BearerAuth, String> {
    let routed = routes(&source, resources, |s, target| s.for_target(target))?;
    let mut builder = silent_refresh_ureq::BearerAuth::builder(source);
    for route in routed {
        builder = match route {
            Routed::Origin(origin, source) => builder.allow_origin_for(origin, source),
            Routed::Url(url, source) => builder.allow_url_for(url, source),
        };
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn each_indicator_applies_to_the_resource_before_it() {
        let (rest, resources) = extract(args(&[
            "--runtime",
            "tokio",
            "--resource",
            "https://a.example/x",
            "--indicator=https://a.example/",
            "--resource=https://b.example/y",
            "--concurrency",
            "2",
        ]))
        .expect("parsed");
        assert_eq!(rest, args(&["--runtime", "tokio", "--concurrency", "2"]));
        assert_eq!(
            resources,
            [
                Resource {
                    url: "https://a.example/x".to_owned(),
                    indicator: Some("https://a.example/".to_owned()),
                },
                Resource::new("https://b.example/y"),
            ]
        );
        assert_eq!(resources[1].target(), Target::default());
    }

    #[test]
    fn an_indicator_needs_its_resource_and_only_one() {
        assert!(extract(args(&["--indicator", "https://a.example/"])).is_err());
        assert!(
            extract(args(&[
                "--resource",
                "https://a.example/",
                "--indicator",
                "https://a.example/",
                "--indicator",
                "https://b.example/"
            ]))
            .is_err()
        );
        assert!(extract(args(&["--resource"])).is_err());
    }

    #[test]
    fn the_urls_come_in_turn() {
        let rotation = Rotation::new(&[Resource::new("a"), Resource::new("b")]);
        let urls: Vec<_> = (0..4).map(|_| rotation.next().to_string()).collect();
        assert_eq!(urls, ["a", "b", "a", "b"]);
    }
}
