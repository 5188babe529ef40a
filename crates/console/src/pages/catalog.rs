//! The event catalog: every type with its description, example payload and
//! how many webhooks subscribe, and the form that adds or edits one.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use outboxd_admin::{event_types, validate, Error};
use tokio_postgres::Client;

use super::{render, Ctx, Form, Layout, PageResult};
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/event-types", get(list))
        .route("/event-types/new", get(new_form).post(add))
        .route("/event-types/{name}/edit", get(edit_form).post(edit))
}

async fn list(ctx: Ctx, db: Db) -> PageResult {
    list_page(ctx, &db).await
}

async fn list_page(ctx: Ctx, client: &Client) -> PageResult {
    let rows = event_types::list(client)
        .await?
        .into_iter()
        .map(|t| CatalogRow {
            example: t.example_payload.pretty(),
            name: t.name,
            description: t.description,
            webhooks: t.subscribed_webhooks,
        })
        .collect();
    Ok(render(StatusCode::OK, &EventTypes { l: ctx.l, rows }))
}

async fn new_form(ctx: Ctx) -> PageResult {
    ctx.caller.admin_only()?;
    Ok(render(StatusCode::OK, &EventTypeForm::new(ctx.l, None)))
}

async fn edit_form(ctx: Ctx, db: Db, Path(name): Path<String>) -> PageResult {
    ctx.caller.admin_only()?;
    let t = event_types::get(&db, &name).await?;
    let mut form = EventTypeForm::new(ctx.l, Some(&name));
    form.description = t.description;
    form.example = t.example_payload.pretty();
    Ok(render(StatusCode::OK, &form))
}

async fn add(ctx: Ctx, db: Db, form: Form) -> PageResult {
    save(ctx, &db, None, &form).await
}

async fn edit(ctx: Ctx, db: Db, Path(name): Path<String>, form: Form) -> PageResult {
    save(ctx, &db, Some(&name), &form).await
}

async fn save(ctx: Ctx, client: &Client, editing: Option<&str>, body: &Form) -> PageResult {
    ctx.caller.admin_only()?;
    let name = editing
        .map(str::to_owned)
        .unwrap_or_else(|| body.text("name").trim().to_owned());
    let description = body.text("description").trim().to_owned();
    let example_text = body.text("example").trim().to_owned();
    let example = if example_text.is_empty() {
        Ok(None)
    } else {
        validate::json("example", &example_text).map(Some)
    };
    let result = match example {
        Ok(ex) => {
            event_types::upsert(client, &name, &description, ex.as_ref(), editing.is_some()).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            let note = format!("{name} saved in the catalog.");
            list_page(ctx.notice(note), client).await
        }
        Err(e @ (Error::Invalid { .. } | Error::Conflict(_))) => {
            let mut form = EventTypeForm::new(ctx.l, editing);
            form.name = name;
            form.description = description;
            form.example = example_text;
            match e {
                Error::Invalid {
                    field: "example",
                    message,
                } => form.err_example = Some(message),
                other => form.err_name = Some(other.to_string()),
            }
            Ok(render(StatusCode::BAD_REQUEST, &form))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "event_types.html")]
struct EventTypes {
    l: Layout,
    rows: Vec<CatalogRow>,
}

struct CatalogRow {
    name: String,
    description: String,
    example: String,
    webhooks: usize,
}

#[derive(Template)]
#[template(path = "event_type_form.html")]
struct EventTypeForm {
    l: Layout,
    title: String,
    action: String,
    editing: bool,
    name: String,
    description: String,
    example: String,
    err_name: Option<String>,
    err_example: Option<String>,
}

impl EventTypeForm {
    fn new(l: Layout, editing: Option<&str>) -> EventTypeForm {
        EventTypeForm {
            l,
            title: match editing {
                Some(n) => format!("Edit {n}"),
                None => "Add event type".into(),
            },
            action: match editing {
                Some(n) => format!("/event-types/{n}/edit"),
                None => "/event-types/new".into(),
            },
            editing: editing.is_some(),
            name: editing.unwrap_or_default().into(),
            description: String::new(),
            example: "{}".into(),
            err_name: None,
            err_example: None,
        }
    }
}
