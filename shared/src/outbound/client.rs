//! Outbound HTTP that cannot be aimed at internal addresses: every name is
//! resolved by [`PublicResolver`], which refuses the connection unless every
//! address is allowed by the [`TargetPolicy`], and the connection goes to the
//! addresses it checked (no second lookup, so no DNS rebinding). Literal IPs
//! never reach a resolver, so callers check URLs with
//! [`check_target_url`](super::target::check_target_url) first. Redirects are not
//! followed and no proxy is used.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::target::{is_loopback, is_public_ip, TargetPolicy};

/// A connection refused because a name resolved to a non-public address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {ip}, which is not a public address")]
pub struct BlockedAddress {
    pub host: String,
    pub ip: IpAddr,
}

/// Name lookup, replaceable in tests.
pub type Lookup = Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> + Send + Sync>;

/// The system resolver.
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// A fixed table of names, for tests.
pub fn static_lookup(table: HashMap<String, Vec<IpAddr>>) -> Lookup {
    let table = Arc::new(table);
    Arc::new(move |host: String| {
        let found = table.get(&host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such host {host}")))
        })
    })
}

/// Whether a policy admits an address.
pub fn allowed(ip: IpAddr, policy: TargetPolicy) -> bool {
    is_public_ip(ip) || (policy.allow_loopback && is_loopback(ip))
}

/// Resolves names and refuses unless every address is allowed.
#[derive(Clone)]
pub struct PublicResolver {
    policy: TargetPolicy,
    lookup: Lookup,
}

impl PublicResolver {
    pub fn new(policy: TargetPolicy, lookup: Lookup) -> Self {
        Self { policy, lookup }
    }
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        let lookup = (self.lookup)(host.clone());
        Box::pin(async move {
            let ips = lookup.await?;
            if ips.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            if let Some(&ip) = ips.iter().find(|ip| !allowed(**ip, policy)) {
                return Err(Box::new(BlockedAddress { host, ip }) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The HTTP client could not be built (no TLS backend, for instance). The
/// function refuses to start rather than fall back to a client without the
/// address policy.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the outbound HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// A client for outbound requests under `policy`: names resolved by
/// [`PublicResolver`], no redirects, no proxy, bounded timeouts, the given
/// `User-Agent`. Fails closed: there is no fallback client.
pub fn client(
    policy: TargetPolicy,
    lookup: Lookup,
    connect_timeout: Duration,
    timeout: Duration,
    user_agent: &str,
) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .dns_resolver(PublicResolver::new(policy, lookup))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(user_agent)
        .build()?)
}

/// Whether a request failed because its target was refused.
pub fn blocked_by_policy(err: &reqwest::Error) -> Option<&BlockedAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(b) = e.downcast_ref::<BlockedAddress>() {
            return Some(b);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn names() -> Lookup {
        static_lookup(HashMap::from([
            ("internal.example.com".to_owned(), vec!["10.0.0.5".parse().unwrap()]),
            (
                "mixed.example.com".to_owned(),
                vec!["93.184.215.14".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            ),
            ("loop.example.com".to_owned(), vec!["127.0.0.1".parse().unwrap()]),
        ]))
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        let port = server().await.port();
        let strict = client(
            TargetPolicy::default(),
            names(),
            Duration::from_secs(2),
            Duration::from_secs(5),
            "test",
        )
        .unwrap();
        for host in ["internal.example.com", "mixed.example.com", "loop.example.com"] {
            let err = strict.get(format!("http://{host}:{port}/")).send().await.unwrap_err();
            let blocked = blocked_by_policy(&err).unwrap_or_else(|| panic!("{host}: {err:?}"));
            assert_eq!(blocked.host, host);
        }
    }

    #[tokio::test]
    async fn local_policy_admits_loopback_and_connects_to_the_checked_address() {
        let port = server().await.port();
        let local = TargetPolicy {
            allow_http: true,
            allow_loopback: true,
        };
        let c = client(local, names(), Duration::from_secs(2), Duration::from_secs(5), "test").unwrap();
        let body = c
            .get(format!("http://loop.example.com:{port}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello");
        let err = c
            .get(format!("http://internal.example.com:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(blocked_by_policy(&err).is_some());
    }
}
