//! The web client, embedded in the binary: `/` is the app, `/app/*` and `/sdk/*` its plain
//! ES modules. No separate web server and no bundler: what is in `web/app` and `web/sdk` at
//! build time is what the browser gets.

use actix_web::http::header::{self, EntityTag};
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

/// The files of `web/app` and `web/sdk` (tests, e2e and node_modules are left out).
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[include = "app/*"]
#[include = "sdk/*"]
struct WebAssets;

/// Scripts, styles and connections only from this server: even if user content ever reached
/// the DOM as markup, no script from elsewhere could run. Avatars may come from https.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: https:; connect-src 'self' ws: wss:; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The page's `Content-Security-Policy` (app data): [`CONTENT_SECURITY_POLICY`] with the
/// blob store's origins in `connect-src` when uploads go straight to it (scale-out mode).
#[derive(Debug, Clone)]
pub struct ContentSecurityPolicy(String);

impl ContentSecurityPolicy {
    /// The policy allowing uploads to `upload_origins` too.
    pub fn allowing_uploads_to(upload_origins: &[String]) -> Self {
        let mut connect = String::from("connect-src 'self' ws: wss:");
        for origin in upload_origins {
            connect.push(' ');
            connect.push_str(origin);
        }
        Self(CONTENT_SECURITY_POLICY.replace("connect-src 'self' ws: wss:", &connect))
    }
}

/// Registers `/`, `/app/{file}` and `/sdk/{file}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/app/{file:.*}", web::get().to(app_file))
        .route("/sdk/{file:.*}", web::get().to(sdk_file));
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "app/index.html")
}

async fn app_file(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    serve(&req, &format!("app/{file}"))
}

async fn sdk_file(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    serve(&req, &format!("sdk/{file}"))
}

/// Answers an embedded file with its content type and a content-hash ETag, so browsers
/// revalidate cheaply (304) and never run a stale module after an upgrade.
fn serve(req: &HttpRequest, path: &str) -> HttpResponse {
    // Only plain relative names: never a way out of the two embedded folders.
    let plain = path
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'));
    let Some(file) = plain.then(|| WebAssets::get(path)).flatten() else {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound);
    };
    let etag = EntityTag::new_strong(hex::encode(file.metadata.sha256_hash()));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag.to_string())
        });
    if fresh {
        return HttpResponse::NotModified()
            .insert_header(header::ETag(etag))
            .finish();
    }
    HttpResponse::Ok()
        .content_type(file.metadata.mimetype())
        .insert_header(header::ETag(etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            req.app_data::<web::Data<ContentSecurityPolicy>>()
                .map_or(CONTENT_SECURITY_POLICY, |p| p.0.as_str()),
        ))
        .body(file.data.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    #[actix_web::test]
    async fn the_app_is_served_at_the_root_with_its_modules() {
        let app = test::init_service(App::new().configure(configure)).await;
        let index = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
        assert_eq!(index.status(), 200);
        assert!(index
            .headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = test::read_body(index).await;
        assert!(String::from_utf8_lossy(&body).contains("/app/main.js"));
        let module = test::call_service(
            &app,
            test::TestRequest::get().uri("/app/main.js").to_request(),
        )
        .await;
        assert_eq!(module.status(), 200);
        assert!(module
            .headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("javascript"));
        let sdk = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/sdk/chat-client.js")
                .to_request(),
        )
        .await;
        assert_eq!(sdk.status(), 200);
    }

    #[actix_web::test]
    async fn the_page_lets_the_browser_upload_to_the_blob_store_and_nowhere_else() {
        let csp = ContentSecurityPolicy::allowing_uploads_to(&["http://127.0.0.1:9000".to_owned()]);
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(csp))
                .configure(configure),
        )
        .await;
        let index = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
        let policy = index
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            policy.contains("connect-src 'self' ws: wss: http://127.0.0.1:9000;"),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
        // Without a blob store of its own origin: this server only.
        let plain = test::init_service(App::new().configure(configure)).await;
        let index =
            test::call_service(&plain, test::TestRequest::get().uri("/").to_request()).await;
        let policy = index
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap();
        assert!(policy
            .to_str()
            .unwrap()
            .contains("connect-src 'self' ws: wss:;"));
    }

    #[actix_web::test]
    async fn an_unchanged_file_answers_not_modified() {
        let app = test::init_service(App::new().configure(configure)).await;
        let first = test::call_service(
            &app,
            test::TestRequest::get().uri("/app/styles.css").to_request(),
        )
        .await;
        let etag = first
            .headers()
            .get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let again = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/app/styles.css")
                .insert_header((header::IF_NONE_MATCH, etag))
                .to_request(),
        )
        .await;
        assert_eq!(again.status(), 304);
    }

    #[actix_web::test]
    async fn tests_and_unknown_files_are_not_served() {
        let app = test::init_service(App::new().configure(configure)).await;
        for uri in [
            "/app/nope.js",
            "/sdk/../package.json",
            "/app/../e2e/human.test.mjs",
        ] {
            let resp =
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.status(), 404, "{uri}");
        }
    }
}
