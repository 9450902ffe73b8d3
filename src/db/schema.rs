//! Table definitions shared by both engines (the migration trees must agree with them;
//! `tests/it/operations.rs` checks that they do).

diesel::table! {
    tenants (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    departments (id) {
        id -> Text,
        tenant_id -> Text,
        slug -> Text,
        name -> Text,
        created_at -> Timestamp,
        archived_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    agent_departments (agent_id, department_id) {
        agent_id -> Text,
        department_id -> Text,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        tenant_id -> Text,
        email -> Text,
        role -> Text,
        department_id -> Nullable<Text>,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        tenant_id -> Text,
        agent_id -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        name -> Text,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    agent_credentials (agent_id) {
        agent_id -> Text,
        password_hash -> Nullable<Text>,
        totp_sealed -> Nullable<Binary>,
        totp_confirmed_at -> Nullable<Timestamp>,
        totp_last_step -> Nullable<BigInt>,
        failed_attempts -> Integer,
        locked_until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    agent_recovery_codes (agent_id, code_hash) {
        agent_id -> Text,
        code_hash -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    agent_pending_logins (id_hash) {
        id_hash -> Text,
        agent_id -> Text,
        attempts -> Integer,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    key_material (purpose) {
        purpose -> Text,
        wrapped -> Binary,
        master_recipient -> Text,
        created_at -> Timestamp,
        rewrapped_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    citizens (id) {
        id -> Text,
        recipient -> Text,
        pivot_hash -> Nullable<Text>,
        nrn_hash -> Nullable<Text>,
        created_at -> Timestamp,
        sealed_contacts -> Nullable<Binary>,
        locked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    vault_escrow (citizen_id) {
        citizen_id -> Text,
        wrapped_identity -> Binary,
    }
}

diesel::table! {
    vault_passkeys (id) {
        id -> Text,
        citizen_id -> Text,
        credential_id -> Text,
        passkey -> Text,
        prf_salt -> Binary,
        wrapped_identity -> Binary,
        label -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    vault_recovery (citizen_id) {
        citizen_id -> Text,
        sealed_identity -> Binary,
        created_at -> Timestamp,
    }
}

diesel::table! {
    vault_recovery_attempts (id) {
        id -> Text,
        citizen_id -> Text,
        attempted_at -> Timestamp,
    }
}

diesel::table! {
    vault_ceremonies (id) {
        id -> Text,
        citizen_id -> Text,
        purpose -> Text,
        state -> Text,
        recipient -> Nullable<Text>,
        proof_hash -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    citizen_logins (issuer, subject) {
        issuer -> Text,
        subject -> Text,
        citizen_id -> Text,
        provider_id -> Text,
        created_at -> Timestamp,
        last_login_at -> Timestamp,
        identity_verified -> Nullable<Bool>,
    }
}

diesel::table! {
    agent_tenant_choices (id_hash) {
        id_hash -> Text,
        agent_ids -> Text,
        provider_id -> Text,
        id_token -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    auth_flows (state_hash) {
        state_hash -> Text,
        purpose -> Text,
        browser_hash -> Text,
        provider_id -> Text,
        nonce -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        address_hash -> Nullable<Text>,
    }
}

diesel::table! {
    maintenance_leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    login_failures_by_address (address_hash) {
        address_hash -> Text,
        failures -> Integer,
        window_started_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        kind -> Text,
        subject_id -> Text,
        provider_id -> Nullable<Text>,
        id_token -> Nullable<Text>,
        csrf_token -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    documents (id) {
        id -> Text,
        tenant_id -> Text,
        department_id -> Nullable<Text>,
        agent_id -> Text,
        citizen_id -> Text,
        category -> Text,
        content_type -> Text,
        sealed_metadata -> Binary,
        age_header -> Binary,
        blob_key -> Text,
        ciphertext_size -> BigInt,
        ciphertext_sha256 -> Text,
        plaintext_size -> BigInt,
        idempotency_key -> Nullable<Text>,
        idempotency_scope -> Nullable<Text>,
        request_fingerprint -> Nullable<Text>,
        created_at -> Timestamp,
        notified_at -> Nullable<Timestamp>,
        first_opened_at -> Nullable<Timestamp>,
        withdrawn_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        withdrawn_by -> Nullable<Text>,
        withdrawal_reason -> Nullable<Text>,
        reminded_at -> Nullable<Timestamp>,
        encrypted_by -> Text,
        unrecoverable_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    notices (id) {
        id -> Text,
        tenant_id -> Text,
        citizen_id -> Text,
        kind -> Text,
        channel -> Text,
        sealed_contact -> Binary,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        claimed_at -> Nullable<Timestamp>,
        claim_token -> Nullable<Text>,
        sent_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    notice_documents (notice_id, document_id) {
        notice_id -> Text,
        document_id -> Text,
    }
}

diesel::table! {
    audit_chain_head (id) {
        id -> Integer,
        seq -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        occurred_at -> Timestamp,
        tenant_id -> Nullable<Text>,
        actor -> Text,
        action -> Text,
        subject -> Nullable<Text>,
        citizen_id -> Nullable<Text>,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
        chain_version -> Integer,
    }
}

diesel::table! {
    bulk_jobs (id) {
        id -> Text,
        tenant_id -> Text,
        agent_id -> Text,
        department_id -> Nullable<Text>,
        state -> Text,
        total -> Integer,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    bulk_job_lines (job_id, line) {
        job_id -> Text,
        line -> Integer,
        outcome -> Text,
        document_id -> Nullable<Text>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    voucher_campaigns (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        item -> Text,
        default_allotment -> Integer,
        starts_on -> Date,
        ends_on -> Date,
        created_by -> Text,
        created_at -> Timestamp,
        closed_at -> Nullable<Timestamp>,
        closed_by -> Nullable<Text>,
    }
}

diesel::table! {
    voucher_sites (id) {
        id -> Text,
        campaign_id -> Text,
        name -> Text,
        address -> Text,
        opening_hours -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    vouchers (id) {
        id -> Text,
        campaign_id -> Text,
        code_hash -> Text,
        household_hash -> Text,
        allotment -> Integer,
        issued_by -> Text,
        issued_at -> Timestamp,
        citizen_id -> Nullable<Text>,
        sealed_code -> Nullable<Binary>,
        revoked_at -> Nullable<Timestamp>,
        revoked_by -> Nullable<Text>,
        replaced_by -> Nullable<Text>,
        redeemed_at -> Nullable<Timestamp>,
        redeemed_site_id -> Nullable<Text>,
        redeemed_by -> Nullable<Text>,
        identity_checked -> Nullable<Bool>,
        redeemed_device -> Nullable<Text>,
    }
}

diesel::table! {
    voucher_scan_failures (id) {
        id -> Text,
        tenant_id -> Text,
        agent_id -> Text,
        campaign_id -> Nullable<Text>,
        reason -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    voucher_scan_requests (id) {
        id -> Text,
        tenant_id -> Text,
        agent_id -> Text,
        site_id -> Text,
        key_hash -> Text,
        code_hash -> Nullable<Text>,
        outcome -> Nullable<Text>,
        created_at -> Timestamp,
        consumed_at -> Nullable<Timestamp>,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(departments -> tenants (tenant_id));
diesel::joinable!(agents -> tenants (tenant_id));
diesel::joinable!(api_tokens -> agents (agent_id));
diesel::joinable!(agent_departments -> agents (agent_id));
diesel::joinable!(agent_departments -> departments (department_id));
diesel::joinable!(agent_credentials -> agents (agent_id));
diesel::joinable!(agent_recovery_codes -> agents (agent_id));
diesel::joinable!(agent_pending_logins -> agents (agent_id));
diesel::joinable!(documents -> citizens (citizen_id));
diesel::joinable!(documents -> tenants (tenant_id));
diesel::joinable!(citizen_logins -> citizens (citizen_id));
diesel::joinable!(notice_documents -> notices (notice_id));
diesel::joinable!(notice_documents -> documents (document_id));
diesel::joinable!(notices -> tenants (tenant_id));
diesel::joinable!(bulk_job_lines -> bulk_jobs (job_id));
diesel::joinable!(voucher_campaigns -> tenants (tenant_id));
diesel::joinable!(voucher_sites -> voucher_campaigns (campaign_id));
diesel::joinable!(vouchers -> voucher_campaigns (campaign_id));

diesel::table! {
    dashboard_documents (tenant_id, day, department_id, category) {
        tenant_id -> Text,
        day -> Text,
        department_id -> Text,
        category -> Text,
        delivered -> BigInt,
        opened -> BigInt,
        withdrawn -> BigInt,
    }
}

diesel::table! {
    dashboard_open_delays (tenant_id, day, department_id, category, band) {
        tenant_id -> Text,
        day -> Text,
        department_id -> Text,
        category -> Text,
        band -> Integer,
        opened -> BigInt,
    }
}

diesel::table! {
    dashboard_notices (tenant_id, department_id, category, day, channel, kind) {
        tenant_id -> Text,
        day -> Text,
        department_id -> Text,
        category -> Text,
        channel -> Text,
        kind -> Text,
        pending -> BigInt,
        sent -> BigInt,
        failed -> BigInt,
    }
}

diesel::table! {
    dashboard_rollups_filled (id) {
        id -> Integer,
        filled_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    departments,
    agent_departments,
    agents,
    api_tokens,
    agent_credentials,
    agent_recovery_codes,
    agent_pending_logins,
    key_material,
    citizens,
    vault_escrow,
    vault_passkeys,
    vault_recovery,
    vault_recovery_attempts,
    vault_ceremonies,
    citizen_logins,
    agent_tenant_choices,
    auth_flows,
    maintenance_leases,
    login_failures_by_address,
    sessions,
    documents,
    notices,
    notice_documents,
    audit_chain_head,
    audit_events,
    bulk_jobs,
    bulk_job_lines,
    voucher_campaigns,
    voucher_sites,
    vouchers,
    voucher_scan_failures,
    voucher_scan_requests,
    dashboard_documents,
    dashboard_open_delays,
    dashboard_notices,
    dashboard_rollups_filled,
);
