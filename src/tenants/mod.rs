//! Tenants (communes, or every member of an IT syndicate) and their departments. Every
//! agent-side row carries its tenant; citizens are global.

use diesel::prelude::*;
use serde::Serialize;

use crate::audit::{self, Actor, AuditEvent};
use crate::db::schema::{departments, tenants};
use crate::db::{Conn, DbError};

/// A short lowercase name for a tenant, department or category, as it appears in
/// URLs, commands and CSV files: `ville-de-namur`, `etat-civil`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slug(String);

/// Why a slug was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a valid short name: use 2 to 48 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
)]
pub struct SlugError(String);

impl Slug {
    /// Parses a slug (also used for department slugs).
    pub fn parse(text: &str) -> Result<Self, SlugError> {
        let valid = (2..=48).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !text.starts_with('-')
            && !text.ends_with('-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(SlugError(text.chars().take(60).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: chrono::NaiveDateTime,
}

/// A department (service) of a tenant.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = departments)]
pub struct Department {
    pub id: String,
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
    pub created_at: chrono::NaiveDateTime,
    /// An archived department receives no new documents; its history stays.
    pub archived_at: Option<chrono::NaiveDateTime>,
}

impl Department {
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

/// Errors of tenant and department management.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("no tenant named {0:?}")]
    UnknownTenant(String),
    #[error("department {0:?} already exists in this tenant")]
    DuplicateDepartment(String),
    #[error("no such department in this tenant")]
    UnknownDepartment,
    #[error("a department name is 1 to 100 characters")]
    InvalidDepartmentName,
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<diesel::result::Error> for TenantError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Creates the tenant named in the configuration unless it exists; returns it.
pub fn ensure_tenant(conn: &mut Conn, slug: &Slug, name: &str) -> Result<Tenant, DbError> {
    if let Some(tenant) = find_tenant(conn, slug.as_str())? {
        return Ok(tenant);
    }
    let tenant = Tenant {
        id: crate::new_id(),
        slug: slug.as_str().to_owned(),
        name: name.to_owned(),
        created_at: crate::now(),
    };
    diesel::insert_into(tenants::table)
        .values(&tenant)
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(Actor::System, "tenant.created")
            .tenant(&tenant.id)
            .subject("tenant", &tenant.id),
    )?;
    tracing::info!(tenant.slug = %tenant.slug, "tenant created");
    Ok(tenant)
}

/// The tenant with this slug, if any.
pub fn find_tenant(conn: &mut Conn, slug: &str) -> Result<Option<Tenant>, DbError> {
    Ok(tenants::table
        .filter(tenants::slug.eq(slug))
        .select(Tenant::as_select())
        .first(conn)
        .optional()?)
}

/// The tenant with this id, if any.
pub fn tenant_by_id(conn: &mut Conn, id: &str) -> Result<Option<Tenant>, DbError> {
    Ok(tenants::table
        .find(id)
        .select(Tenant::as_select())
        .first(conn)
        .optional()?)
}

/// The tenant with this slug, or an error naming it.
pub fn require_tenant(conn: &mut Conn, slug: &str) -> Result<Tenant, TenantError> {
    find_tenant(conn, slug)?.ok_or_else(|| TenantError::UnknownTenant(slug.to_owned()))
}

/// Adds a department to a tenant.
pub fn create_department(
    conn: &mut Conn,
    tenant: &Tenant,
    slug: &Slug,
    name: &str,
    actor: Actor,
) -> Result<Department, TenantError> {
    if find_department(conn, &tenant.id, slug.as_str())?.is_some() {
        return Err(TenantError::DuplicateDepartment(slug.as_str().to_owned()));
    }
    let department = Department {
        id: crate::new_id(),
        tenant_id: tenant.id.clone(),
        slug: slug.as_str().to_owned(),
        name: department_name(name)?,
        created_at: crate::now(),
        archived_at: None,
    };
    diesel::insert_into(departments::table)
        .values(&department)
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(actor, "department.created")
            .tenant(&tenant.id)
            .subject("department", &department.id),
    )?;
    Ok(department)
}

/// A tenant's department by slug.
pub fn find_department(
    conn: &mut Conn,
    tenant_id: &str,
    slug: &str,
) -> Result<Option<Department>, DbError> {
    Ok(departments::table
        .filter(departments::tenant_id.eq(tenant_id))
        .filter(departments::slug.eq(slug))
        .select(Department::as_select())
        .first(conn)
        .optional()?)
}

/// A department's display name, trimmed: 1 to 100 characters.
fn department_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    if (1..=100).contains(&name.chars().count()) {
        Ok(name.to_owned())
    } else {
        Err(TenantError::InvalidDepartmentName)
    }
}

/// A tenant's departments, in name order, archived ones included.
pub fn list_departments(conn: &mut Conn, tenant_id: &str) -> Result<Vec<Department>, DbError> {
    Ok(departments::table
        .filter(departments::tenant_id.eq(tenant_id))
        .order(departments::name.asc())
        .select(Department::as_select())
        .load(conn)?)
}

/// Renames a department, and archives or restores it.
pub fn update_department(
    conn: &mut Conn,
    tenant_id: &str,
    department_id: &str,
    name: &str,
    archived: bool,
    actor: Actor,
) -> Result<(), TenantError> {
    let name = department_name(name)?;
    let current: Option<Option<chrono::NaiveDateTime>> = departments::table
        .filter(departments::tenant_id.eq(tenant_id))
        .filter(departments::id.eq(department_id))
        .select(departments::archived_at)
        .first(conn)
        .optional()?;
    let current = current.ok_or(TenantError::UnknownDepartment)?;
    let archived_at = match (current, archived) {
        (Some(since), true) => Some(since),
        (None, true) => Some(crate::now()),
        (_, false) => None,
    };
    diesel::update(departments::table.find(department_id))
        .set((
            departments::name.eq(&name),
            departments::archived_at.eq(archived_at),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        AuditEvent::new(actor, "department.updated")
            .tenant(tenant_id)
            .subject("department", department_id)
            .details(serde_json::json!({ "archived": archived })),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_strict() {
        assert!(Slug::parse("ville-de-namur").is_ok());
        for bad in [
            "", "a", "Ville", "ville_de", "-ville", "ville-", "ville de", "é",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }
}
