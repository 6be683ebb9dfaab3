//! Attribute macros of [ringloop](https://docs.rs/ringloop); use them through
//! the re-exports `#[ringloop::main]` and `#[ringloop::test]`.
//!
//! The expansions are small: the work (building the loop, skipping an
//! unavailable io_uring, watching for slow callbacks) is done by
//! `ringloop::__macros`, a hidden module of the runtime crate, so the
//! generated code names only `::ringloop` paths.

use proc_macro::TokenStream;
use proc_macro2::{Ident, Span, TokenStream as TokenStream2};
use quote::{ToTokens, format_ident, quote};
use syn::{Attribute, Error, FnArg, ItemFn, LitBool, LitInt, LitStr, parse_macro_input};

/// Runs an `async fn main()` on a new event loop (`ringloop::run`).
///
/// ```ignore
/// #[ringloop::main]
/// async fn main() -> std::io::Result<()> {
///     ringloop::sleep(std::time::Duration::from_millis(1)).await;
///     Ok(())
/// }
/// ```
///
/// `main` may return anything `fn main` may return (`()`, `Result<(), E>`, ...).
/// The loop is closed when `main`'s future finishes; tasks still pending then
/// are cancelled, as `ringloop::run` does.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    expand_main(args.into(), f)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

fn expand_main(args: TokenStream2, f: ItemFn) -> syn::Result<TokenStream2> {
    if !args.is_empty() {
        return Err(Error::new_spanned(args, "#[ringloop::main] takes no arguments"));
    }
    if f.sig.asyncness.is_none() {
        return Err(Error::new_spanned(
            f.sig.fn_token,
            "#[ringloop::main] needs an `async fn`",
        ));
    }
    if !f.sig.inputs.is_empty() || !f.sig.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &f.sig,
            "#[ringloop::main] needs a function without parameters",
        ));
    }
    let ItemFn { attrs, vis, sig, block } = f;
    let mut outer = sig.clone();
    outer.asyncness = None;
    let mut inner = sig;
    inner.ident = Ident::new("__ringloop_main", Span::call_site());
    Ok(quote! {
        #(#attrs)*
        #vis #outer {
            #inner #block
            ::ringloop::__macros::main(__ringloop_main())
        }
    })
}

/// Turns a function into one `#[test]` per backend.
///
/// Two shapes are accepted:
/// - `fn name(lp: &EventLoop) { ... }`: the body gets the loop and drives it
///   itself (`lp.run_until_complete(...)`, `lp.run_forever()`, ...);
/// - `async fn name() { ... }`: the body runs as the loop's main future.
///
/// Either may return `()` or `Result<(), E>` with `E: Debug` (an `Err` fails
/// the test). The function stays as written (a plain function rustfmt
/// formats); next to it a module `name` holds the tests `name::uring` and
/// `name::fallback`.
///
/// Options (comma-separated):
/// - `backend = "both"` (default), `"uring"` or `"fallback"`: which tests to
///   generate. The io_uring test prints `SKIP [uring]: ...` and passes when
///   io_uring cannot be set up here, unless `RINGLOOP_REQUIRE_URING=1`.
/// - `virtual_clock`: the loop runs on a virtual clock (timers jump instead
///   of sleeping).
/// - `slow_callback_ms = N`: debug mode with an N ms slow-callback threshold,
///   and the test fails if any callback or task step blocked the loop that
///   long (the test must keep the exception handler the harness installs).
///
/// `#[ignore]` and `#[should_panic]` on the function go to the generated
/// tests (a skipped io_uring test does not panic, so a `#[should_panic]`
/// one fails where io_uring is unavailable: give it `backend = "fallback"`);
/// `#[cfg(...)]` applies to the function and the module. The generated
/// tests are `pub(super)`, so a test can also call them in-process.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    let mut opts = TestOptions::default();
    let parser = syn::meta::parser(|meta| opts.parse(meta));
    parse_macro_input!(args with parser);
    expand_test(opts, f).unwrap_or_else(Error::into_compile_error).into()
}

#[derive(Default)]
struct TestOptions {
    /// `None`: both.
    backend: Option<&'static str>,
    virtual_clock: bool,
    slow_callback_ms: Option<u64>,
}

impl TestOptions {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("backend") {
            let s: LitStr = meta.value()?.parse()?;
            self.backend = match s.value().as_str() {
                "both" => None,
                "uring" => Some("uring"),
                "fallback" => Some("fallback"),
                _ => {
                    return Err(Error::new_spanned(
                        s,
                        "backend must be \"both\", \"uring\" or \"fallback\"",
                    ));
                }
            };
            Ok(())
        } else if meta.path.is_ident("virtual_clock") {
            self.virtual_clock = if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<LitBool>()?.value
            } else {
                true
            };
            Ok(())
        } else if meta.path.is_ident("slow_callback_ms") {
            let n: LitInt = meta.value()?.parse()?;
            self.slow_callback_ms = Some(n.base10_parse()?);
            Ok(())
        } else {
            Err(meta.error("unknown option; expected `backend = \"...\"`, `virtual_clock` or `slow_callback_ms = N`"))
        }
    }
}

fn expand_test(opts: TestOptions, mut f: ItemFn) -> syn::Result<TokenStream2> {
    if !f.sig.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &f.sig.generics,
            "#[ringloop::test] functions cannot be generic",
        ));
    }
    let name = f.sig.ident.clone();
    let call = if f.sig.asyncness.is_some() {
        if !f.sig.inputs.is_empty() {
            return Err(Error::new_spanned(
                &f.sig.inputs,
                "an async #[ringloop::test] takes no parameters",
            ));
        }
        quote!(|lp: &::ringloop::EventLoop| ::ringloop::__macros::complete(lp, super::#name()))
    } else {
        match (f.sig.inputs.len(), f.sig.inputs.first()) {
            (1, Some(FnArg::Typed(_))) => {}
            _ => {
                return Err(Error::new_spanned(
                    &f.sig,
                    "#[ringloop::test] needs `async fn name()` or `fn name(lp: &EventLoop)`",
                ));
            }
        }
        quote!(|lp: &::ringloop::EventLoop| super::#name(lp))
    };

    // `#[ignore]` / `#[should_panic]` belong on the generated tests; `#[cfg]`
    // on both the function and the module.
    let (test_attrs, kept): (Vec<Attribute>, Vec<Attribute>) = std::mem::take(&mut f.attrs)
        .into_iter()
        .partition(|a| a.path().is_ident("ignore") || a.path().is_ident("should_panic"));
    f.attrs = kept;
    let cfgs: Vec<Attribute> = f.attrs.iter().filter(|a| a.path().is_ident("cfg")).cloned().collect();

    let vc = opts.virtual_clock;
    let slow = match opts.slow_callback_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let backends: &[&str] = match opts.backend {
        Some(b) => &[if b == "uring" { "uring" } else { "fallback" }],
        None => &["uring", "fallback"],
    };
    let tests = backends.iter().map(|b| {
        let test_name = format_ident!("{}", b);
        let choice = format_ident!("{}", if *b == "uring" { "Uring" } else { "Fallback" });
        quote! {
            #[test]
            #(#test_attrs)*
            pub(super) fn #test_name() {
                ::ringloop::__macros::run_test(
                    ::ringloop::DriverChoice::#choice,
                    ::ringloop::__macros::Options { virtual_clock: #vc, slow_callback_ms: #slow },
                    ::core::stringify!(#name),
                    #call,
                )
            }
        }
    });
    let mut out = f.into_token_stream();
    out.extend(quote! {
        #(#cfgs)*
        mod #name {
            #(#tests)*
        }
    });
    Ok(out)
}
