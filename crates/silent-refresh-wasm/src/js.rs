//! Small helpers over the JS global scope (a window, a worker, or Node): what this
//! crate reads there, through `js_sys::Reflect`, so that it runs wherever the API is;
//! promises and IndexedDB requests as futures.

use std::future::Future;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbRequest;

/// `target[name]`, `undefined` when absent.
pub(crate) fn get(target: &JsValue, name: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// The global scope's `name` (`fetch`, `indexedDB`, `navigator`…), if it has one.
pub(crate) fn global(name: &str) -> Option<JsValue> {
    let value = get(&js_sys::global(), name);
    (!value.is_undefined() && !value.is_null()).then_some(value)
}

/// The function `target[name]`, if it is one.
pub(crate) fn method(target: &JsValue, name: &str) -> Option<Function> {
    get(target, name).dyn_into::<Function>().ok()
}

/// What a JS error says (its `name` and `message`), for an error or a log line; a
/// browser's errors carry no secret of ours (no URL query, no token).
pub(crate) fn describe(error: &JsValue) -> String {
    let name = get(error, "name").as_string();
    let message = get(error, "message").as_string();
    match (name, message) {
        (Some(name), Some(message)) if !message.is_empty() => format!("{name}: {message}"),
        (Some(name), _) => name,
        (None, Some(message)) => message,
        (None, None) => error
            .as_string()
            .unwrap_or_else(|| "an unknown JS error".to_owned()),
    }
}

/// A promise, awaited; its rejection described.
pub(crate) fn settle(promise: Promise) -> impl Future<Output = Result<JsValue, String>> {
    let future = JsFuture::from(promise);
    async move { future.await.map_err(|error| describe(&error)) }
}

/// An IndexedDB request's result, once it succeeded.
pub(crate) async fn request_done(request: &IdbRequest) -> Result<JsValue, String> {
    let promise = Promise::new(&mut |resolve, reject| {
        let succeeded = request.clone();
        let on_success = Closure::once_into_js(move || {
            let _ = resolve.call1(&JsValue::UNDEFINED, &succeeded.result().unwrap_or_default());
        });
        let failed = request.clone();
        let on_error = Closure::once_into_js(move || {
            let error = failed
                .error()
                .ok()
                .flatten()
                .map_or(JsValue::UNDEFINED, JsValue::from);
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        });
        request.set_onsuccess(Some(on_success.unchecked_ref()));
        request.set_onerror(Some(on_error.unchecked_ref()));
    });
    settle(promise).await
}
