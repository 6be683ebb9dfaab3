//! An axum `Router` served by ringloop's hyper server (feature `hyper`),
//! on both backends: axum demands `Send` handlers and state; `!Send` loop
//! work goes through `ringloop::ThreadBound`. A GET route with a path
//! parameter, a JSON POST echo (and its 400 on bad JSON), shared `!Send`
//! state, the 404 fallback, and graceful shutdown.
#![cfg(feature = "hyper")]

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use ringloop::ThreadBound;
use ringloop::hyper::{Server, http1_handshake};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::sync::Event;

/// State axum can share (`Clone + Send + Sync`) around a loop-thread `Rc`.
type Visits = Arc<ThreadBound<Rc<Cell<u32>>>>;

fn app(visits: Visits) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from axum on ringloop" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move { format!("user {id}") }),
        )
        .route(
            "/echo",
            post(|Json(v): Json<serde_json::Value>| async move { Json(serde_json::json!({ "echo": v })) }),
        )
        .route(
            "/visits",
            get(|State(visits): State<Visits>| async move {
                // A `Send` handler future around `!Send` loop work: a
                // ringloop timer and an `Rc`, checked to be on the loop thread.
                ThreadBound::new(async move {
                    ringloop::sleep(Duration::from_millis(1)).await;
                    let n = visits.get().expect("on the loop thread");
                    n.set(n.get() + 1);
                    format!("visits {}", n.get())
                })
                .await
            }),
        )
        .with_state(visits)
}

/// Serves `router` on `listener` until `stop` is set.
fn spawn_server(listener: TcpListener, router: Router, stop: Rc<Event>) -> ringloop::Task<std::io::Result<()>> {
    ringloop::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let mut router = router.clone();
            tower_service::Service::call(&mut router, req)
        });
        Server::new()
            .serve(&listener, svc, async move { stop.wait().await })
            .await
    })
}

async fn text(resp: hyper::Response<hyper::body::Incoming>) -> String {
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(b.to_vec()).unwrap()
}

fn req(method: &str, path: &str, json: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path).header(HOST, "localhost");
    if json.is_some() {
        b = b.header(CONTENT_TYPE, "application/json");
    }
    b.body(Full::new(Bytes::from(json.unwrap_or("").to_owned()))).unwrap()
}

#[ringloop::test]
async fn an_axum_router_serves_real_responses() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let counter = Rc::new(Cell::new(0));
    let visits: Visits = Arc::new(ThreadBound::new(counter.clone()));
    let stop = Rc::new(Event::new());
    let server = spawn_server(listener, app(visits), stop.clone());

    let tcp = TcpStream::connect_addr(addr).await.unwrap();
    let mut send = http1_handshake::<_, Full<Bytes>>(tcp).await.unwrap();

    let resp = send.send_request(req("GET", "/hello", None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(text(resp).await, "hello from axum on ringloop");

    let resp = send.send_request(req("GET", "/users/42", None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(text(resp).await, "user 42");

    let body = r#"{"name":"ringloop","n":[1,2,3]}"#;
    let resp = send.send_request(req("POST", "/echo", Some(body))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v, serde_json::json!({ "echo": { "name": "ringloop", "n": [1, 2, 3] } }));

    let resp = send
        .send_request(req("POST", "/echo", Some("{not json")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let _ = text(resp).await;

    for i in 1..=3 {
        let resp = send.send_request(req("GET", "/visits", None)).await.unwrap();
        assert_eq!(text(resp).await, format!("visits {i}"));
    }
    assert_eq!(counter.get(), 3, "the handlers updated the loop thread's Rc");

    let resp = send.send_request(req("GET", "/no/such/route", None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let _ = text(resp).await;
    // A bad path parameter is axum's 400, not a panic.
    let resp = send.send_request(req("GET", "/users/abc", None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let _ = text(resp).await;

    stop.set();
    server.await.unwrap().expect("serve");
    send.ready().await.expect_err("the server closed the idle connection");
}
