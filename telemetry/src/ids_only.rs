//! The OpenTelemetry layer as it runs when no span leaves the process: every span still
//! gets its trace id, its span id and its parent, for the logs and the `traceparent`
//! sent on, but the layer is not given what only an exported span would show.
//!
//! tracing-opentelemetry copies each field value of a span into an owned attribute when
//! the span is made and on each `record`, takes a lock and the time on each exit, and
//! on close starts the span it has been building and ends it; with no exporter, all of
//! that is thrown away. [`IdsOnly`] hands it each new span with its metadata and parent
//! but none of its values, and nothing of its records, enters, exits and closes.
//! Everything else reaches the layer as it is, including `downcast_raw`, through which
//! `OpenTelemetrySpanExt` finds the layer's span context (a hidden `Layer` method that
//! `tracing-subscriber`'s own `Filtered` forwards the same way).
//!
//! It wraps the layer together with its per-layer filter, so that the filter's lookup
//! of the span in the registry on each enter, exit, record and close is skipped too.
//! So that filter must keep no state of its own per span: [`filtered`], the only way to
//! make one, takes a function of a callsite's metadata (an `EnvFilter`, whose span
//! directives track spans until they close, would keep every span it saw). A span the
//! layer has started (its context was asked for: a trace id read, a `traceparent`
//! written, a child made) ends, with nothing to export it to, when the last copy of its
//! context goes: the registry's at close, or a child's that holds it as its parent.
//! Skipping enters and exits suits the set-up it is used in, with the layer's context
//! activation and busy/idle times off. This is an adapter of the kept crate, not a
//! tracer of our own.

use std::any::TypeId;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterFn, Filtered, filter_fn};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A layer given each span's ids and parent only (see the module's doc); made by
/// [`filtered`].
#[derive(Debug)]
pub(crate) struct IdsOnly<L>(L);

/// `inner`, for the spans and events `wanted` says from their metadata alone (at `max`
/// at most), given their ids and parents only.
pub(crate) fn filtered<S, L>(
    inner: L,
    wanted: fn(&Metadata<'_>) -> bool,
    max: LevelFilter,
) -> IdsOnly<Filtered<L, FilterFn, S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    IdsOnly(inner.with_filter(filter_fn(wanted).with_max_level_hint(max)))
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for IdsOnly<L> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        let none = metadata.fields().value_set(&[]);
        let bare = match attrs.parent() {
            Some(parent) => Attributes::child_of(parent.clone(), metadata, &none),
            None if attrs.is_root() => Attributes::new_root(metadata, &none),
            None => Attributes::new(metadata, &none),
        };
        self.0.on_new_span(&bare, id, ctx);
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_record(&self, _: &Id, _: &Record<'_>, _: Context<'_, S>) {}

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }

    fn on_enter(&self, _: &Id, _: Context<'_, S>) {}

    fn on_exit(&self, _: &Id, _: Context<'_, S>) {}

    fn on_close(&self, _: Id, _: Context<'_, S>) {}

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else {
            // SAFETY: forwarded as is; the inner layer's answer is valid for as long
            // as `self` is.
            unsafe { self.0.downcast_raw(id) }
        }
    }
}
