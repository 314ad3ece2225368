//! The console's two languages: which one a request gets, and every string of the pages in
//! each ([`Text`]). Reason messages and guidance come from the reason-code catalogue, which
//! carries both languages itself.

use axum::http::{HeaderMap, header};

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

/// The cookie that remembers a language chosen with `?lang=`.
pub const LANG_COOKIE: &str = "lg_console_lang";

impl Lang {
    /// `en` or `zh` (as in `?lang=`).
    pub const fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The `lang` attribute of the page.
    pub const fn html(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// `en` or `zh`, else none.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The page's strings.
    pub const fn text(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }

    /// The language of a request: `?lang=`, else the cookie it set, else the first of
    /// `Accept-Language` that the console speaks, else English.
    pub fn negotiate(query: Option<&str>, cookie: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(l) = query.and_then(Lang::parse) {
            return l;
        }
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Tags in the order sent; a `q=0` tag is refused, other weights are not ranked
        // (browsers send their preference order).
        for tag in accept.split(',') {
            let mut parts = tag.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000")) {
                continue;
            }
            if name == "zh" || name.starts_with("zh-") {
                return Lang::Zh;
            }
            if name == "en" || name.starts_with("en-") {
                return Lang::En;
            }
        }
        Lang::En
    }
}

/// Every string of the console's pages, in one language.
#[derive(Debug)]
#[allow(missing_docs)] // each field is its English text
pub struct Text {
    pub console: &'static str,
    pub skip: &'static str,
    pub nav_label: &'static str,
    pub nav_appeals: &'static str,
    pub nav_customers: &'static str,
    pub nav_policy: &'static str,
    pub nav_thresholds: &'static str,
    pub signed_in_as: &'static str,
    pub sign_out: &'static str,
    pub language: &'static str,
    pub sign_in_title: &'static str,
    pub sign_in_intro: &'static str,
    pub token_label: &'static str,
    pub token_help: &'static str,
    pub sign_in: &'static str,
    pub refused_caller_key: &'static str,
    pub refused_unknown_token: &'static str,
    pub refused_csrf: &'static str,
    pub session_ended: &'static str,
    pub appeals_title: &'static str,
    pub show: &'static str,
    pub filter_open: &'static str,
    pub filter_overdue: &'static str,
    pub filter_resolved: &'static str,
    pub filter_all: &'static str,
    pub sort_due_first: &'static str,
    pub sort_due_last: &'static str,
    pub col_appeal: &'static str,
    pub col_user: &'static str,
    pub col_created: &'static str,
    pub col_due: &'static str,
    pub col_status: &'static str,
    pub overdue: &'static str,
    pub no_appeals: &'static str,
    pub status_open: &'static str,
    pub status_upheld: &'static str,
    pub status_overturned: &'static str,
    pub appeal_title: &'static str,
    pub appeal_message: &'static str,
    pub decision_title: &'static str,
    pub decision: &'static str,
    pub outcome: &'static str,
    pub amount: &'static str,
    pub policy: &'static str,
    pub thresholds_version: &'static str,
    pub evaluated_at: &'static str,
    pub reasons: &'static str,
    pub no_reasons: &'static str,
    pub figures: &'static str,
    pub unit_days: &'static str,
    pub unit_count: &'static str,
    pub unit_score: &'static str,
    pub limit: &'static str,
    pub actual: &'static str,
    pub suggested: &'static str,
    pub retry_at: &'static str,
    pub appealable: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub bureau: &'static str,
    pub bureau_off: &'static str,
    pub bureau_unavailable: &'static str,
    pub bureau_answered: &'static str,
    pub bureau_no_code: &'static str,
    pub decision_gone: &'static str,
    pub resolve_title: &'static str,
    pub resolution: &'static str,
    pub uphold: &'static str,
    pub overturn: &'static str,
    pub note: &'static str,
    pub note_help: &'static str,
    pub resolve: &'static str,
    pub resolved_at: &'static str,
    pub resolution_note: &'static str,
    pub resolved_notice: &'static str,
    pub outcome_approved: &'static str,
    pub outcome_rejected: &'static str,
    pub outcome_review: &'static str,
    pub policy_title: &'static str,
    pub in_force: &'static str,
    pub forced: &'static str,
    pub by_calendar: &'static str,
    pub why: &'static str,
    pub since: &'static str,
    pub ends_at: &'static str,
    pub profile: &'static str,
    pub windows_title: &'static str,
    pub col_window: &'static str,
    pub col_when: &'static str,
    pub daily: &'static str,
    pub force: &'static str,
    pub follow_calendar: &'static str,
    pub force_normal: &'static str,
    pub confirm_title: &'static str,
    pub col_setting: &'static str,
    pub confirm_from: &'static str,
    pub confirm_to: &'static str,
    pub confirm_effect: &'static str,
    pub confirm_calendar_effect: &'static str,
    pub confirm: &'static str,
    pub cancel: &'static str,
    pub user_quota: &'static str,
    pub per_minute: &'static str,
    pub burst: &'static str,
    pub admission: &'static str,
    pub forced_notice: &'static str,
    pub customers_title: &'static str,
    pub user_id: &'static str,
    pub user_help: &'static str,
    pub look_up: &'static str,
    pub user_not_found: &'static str,
    pub credit_line: &'static str,
    pub line_limit: &'static str,
    pub used: &'static str,
    pub available: &'static str,
    pub drawable_now: &'static str,
    pub constraints: &'static str,
    pub user_appeals: &'static str,
    pub trail_title: &'static str,
    pub trail_help: &'static str,
    pub trail_empty: &'static str,
    pub trail_off: &'static str,
    pub col_answer: &'static str,
    pub col_detail: &'static str,
    pub refused: &'static str,
    pub thresholds_title: &'static str,
    pub live_version: &'static str,
    pub document: &'static str,
    pub history_title: &'static str,
    pub history_help: &'static str,
    pub history_empty: &'static str,
    pub history_published: &'static str,
    pub history_promoted: &'static str,
    pub history_no_field: &'static str,
    pub history_more: &'static str,
    pub history_cut: &'static str,
    pub history_dropped: &'static str,
    pub history_unavailable: &'static str,
    pub col_version: &'static str,
    pub col_by: &'static str,
    pub col_difference: &'static str,
    pub not_found: &'static str,
    pub unavailable: &'static str,
    pub back: &'static str,
}

/// English.
pub static EN: Text = Text {
    console: "loan-gateway operator console",
    skip: "Skip to content",
    nav_label: "Console sections",
    nav_appeals: "Appeals",
    nav_customers: "Customers",
    nav_policy: "Peak windows",
    nav_thresholds: "Thresholds",
    signed_in_as: "Signed in as",
    sign_out: "Sign out",
    language: "Language",
    sign_in_title: "Sign in",
    sign_in_intro: "Operators sign in with an admin token. Caller API keys cannot sign in.",
    token_label: "Admin token",
    token_help: "The token configured as admin_token (GATEWAY_ADMIN_TOKEN).",
    sign_in: "Sign in",
    refused_caller_key: "This is a caller API key. Caller keys cannot sign in to the console; use an admin token.",
    refused_unknown_token: "This token is not an admin token.",
    refused_csrf: "The form's security token is missing or does not match your session: nothing was changed. Reload the page and try again.",
    session_ended: "Your session has ended. Sign in again.",
    appeals_title: "Appeals",
    show: "Show",
    filter_open: "Open",
    filter_overdue: "Overdue",
    filter_resolved: "Resolved",
    filter_all: "All",
    sort_due_first: "Due soonest first",
    sort_due_last: "Due latest first",
    col_appeal: "Appeal",
    col_user: "User",
    col_created: "Filed",
    col_due: "Due",
    col_status: "Status",
    overdue: "Overdue",
    no_appeals: "No appeals here.",
    status_open: "Open",
    status_upheld: "Upheld",
    status_overturned: "Overturned",
    appeal_title: "Appeal",
    appeal_message: "The customer's message",
    decision_title: "The decision it contests",
    decision: "Decision",
    outcome: "Outcome",
    amount: "Amount asked",
    policy: "Policy",
    thresholds_version: "Thresholds version",
    evaluated_at: "Decided at",
    reasons: "Reasons, most decisive first",
    no_reasons: "No reasons recorded.",
    figures: "Figures",
    unit_days: "days",
    unit_count: "times",
    unit_score: "points",
    limit: "limit",
    actual: "actual",
    suggested: "Would be approved now",
    retry_at: "Window ends",
    appealable: "Appealable",
    yes: "yes",
    no: "no",
    bureau: "Credit bureau",
    bureau_off: "The bureau is not configured on this gateway: the decision was made without it.",
    bureau_unavailable: "The bureau gave no usable answer in time (timeout, error, breaker open, bulkhead full or no budget left), so the drawdown went to review. The precise cause is counted in the bureau metrics, not stored per decision.",
    bureau_answered: "The bureau answered, and its answer decided:",
    bureau_no_code: "No bureau rule decided this outcome: either the bureau answered within the profile's rules or it was not consulted for this drawdown (the decision record does not keep which).",
    decision_gone: "The decision is no longer stored (past its retention).",
    resolve_title: "Resolve",
    resolution: "Resolution",
    uphold: "Uphold: the decision stands",
    overturn: "Overturn: the decision was wrong",
    note: "Note",
    note_help: "What you found; the customer reads it.",
    resolve: "Resolve appeal",
    resolved_at: "Resolved at",
    resolution_note: "Resolution note",
    resolved_notice: "The appeal is resolved.",
    outcome_approved: "Approved",
    outcome_rejected: "Rejected",
    outcome_review: "Review",
    policy_title: "Peak windows",
    in_force: "In force now",
    forced: "forced by an operator",
    by_calendar: "by the calendar",
    why: "Why",
    since: "Since",
    ends_at: "Ends",
    profile: "Thresholds profile",
    windows_title: "Configured windows",
    col_window: "Window",
    col_when: "When",
    daily: "daily",
    force: "Force on",
    follow_calendar: "Follow the calendar again",
    force_normal: "Force off: the normal policy",
    confirm_title: "Confirm the change",
    col_setting: "Setting",
    confirm_from: "Now in force",
    confirm_to: "After the change",
    confirm_effect: "This gateway instance (not the other instances of a fleet) applies the window's limits and thresholds profile from its next request, until the window is released. Drawdowns above the window's tighter limits are rejected with PEAK_WINDOW_TIGHTENED.",
    confirm_calendar_effect: "The forced window is released on this gateway instance: the calendar decides the policy again from its next request.",
    confirm: "Confirm",
    cancel: "Cancel",
    user_quota: "Per-user quota",
    per_minute: "/ min",
    burst: "burst",
    admission: "Admission (concurrency / queue)",
    forced_notice: "The policy was changed.",
    customers_title: "Customers",
    user_id: "User id",
    user_help: "For example u-demo-a.",
    look_up: "Look up",
    user_not_found: "No such user.",
    credit_line: "Credit line now",
    line_limit: "Line",
    used: "Drawn",
    available: "Available",
    drawable_now: "Drawable now",
    constraints: "What holds it below the available line",
    user_appeals: "Appeals",
    trail_title: "Recent answers on this instance",
    trail_help: "Decisions and 429/503 refusals this gateway instance answered the user lately, newest first. Kept in memory, bounded, per instance: another instance of a fleet keeps its own, and a restart forgets them. A request shed before its body was read names no user and is not here.",
    trail_empty: "Nothing answered to this user lately on this instance.",
    trail_off: "The per-user trail is off (console.trail_users = 0).",
    col_answer: "Answer",
    col_detail: "Detail",
    refused: "Refused",
    thresholds_title: "Thresholds",
    live_version: "Live version",
    document: "The document in force",
    history_title: "History",
    history_help: "Versions published through the admin API or promoted from a shadow candidate, newest first, from the audit trail of operator changes (GET /admin/audit): who, when, and each field that changed.",
    history_empty: "No version was published since the audit trail began: the live version is the one the gateway started with.",
    history_published: "published",
    history_promoted: "promoted from shadow",
    history_no_field: "No field changed but the version.",
    history_more: "More fields changed",
    history_cut: "Only the newest 5,000 operator changes were searched; older versions are not listed.",
    history_dropped: "The in-memory store dropped its oldest audit entries; older versions are not listed.",
    history_unavailable: "The audit trail could not be read (the store did not answer); the history is not shown.",
    col_version: "Version",
    col_by: "By",
    col_difference: "Difference",
    not_found: "Not found.",
    unavailable: "The store did not answer; nothing was changed. Try again.",
    back: "Back",
};

/// Simplified Chinese.
pub static ZH: Text = Text {
    console: "loan-gateway 运营控制台",
    skip: "跳到正文",
    nav_label: "控制台栏目",
    nav_appeals: "申诉",
    nav_customers: "客户",
    nav_policy: "高峰时段",
    nav_thresholds: "风控阈值",
    signed_in_as: "当前登录",
    sign_out: "退出登录",
    language: "语言",
    sign_in_title: "登录",
    sign_in_intro: "运营人员使用管理令牌登录。调用方 API 密钥不能登录。",
    token_label: "管理令牌",
    token_help: "配置为 admin_token（GATEWAY_ADMIN_TOKEN）的令牌。",
    sign_in: "登录",
    refused_caller_key: "这是调用方 API 密钥，不能登录控制台；请使用管理令牌。",
    refused_unknown_token: "该令牌不是管理令牌。",
    refused_csrf: "表单的安全令牌缺失或与会话不符：未做任何更改。请刷新页面后重试。",
    session_ended: "会话已结束，请重新登录。",
    appeals_title: "申诉",
    show: "显示",
    filter_open: "待处理",
    filter_overdue: "已逾期",
    filter_resolved: "已处理",
    filter_all: "全部",
    sort_due_first: "截止时间最早在前",
    sort_due_last: "截止时间最晚在前",
    col_appeal: "申诉",
    col_user: "用户",
    col_created: "提交时间",
    col_due: "截止时间",
    col_status: "状态",
    overdue: "已逾期",
    no_appeals: "没有申诉。",
    status_open: "待处理",
    status_upheld: "维持原决定",
    status_overturned: "已推翻",
    appeal_title: "申诉",
    appeal_message: "客户留言",
    decision_title: "被申诉的决定",
    decision: "决定",
    outcome: "结果",
    amount: "申请金额",
    policy: "策略",
    thresholds_version: "阈值版本",
    evaluated_at: "决定时间",
    reasons: "原因（按决定性排序）",
    no_reasons: "没有记录原因。",
    figures: "数据",
    unit_days: "天",
    unit_count: "次",
    unit_score: "分",
    limit: "上限",
    actual: "实际",
    suggested: "现在可获批",
    retry_at: "时段结束",
    appealable: "可申诉",
    yes: "是",
    no: "否",
    bureau: "征信机构",
    bureau_off: "本网关未配置征信机构：该决定未查询征信。",
    bureau_unavailable: "征信机构未能及时给出可用答复（超时、错误、熔断、隔舱已满或预算不足），因此转为人工审核。具体原因记录在征信指标中，不按决定存储。",
    bureau_answered: "征信机构已答复，并由其答复决定：",
    bureau_no_code: "该结果不是由征信规则决定的：征信答复在规则范围内，或本次未查询征信（决定记录不保存是哪一种）。",
    decision_gone: "该决定已不再保存（超过保留期）。",
    resolve_title: "处理",
    resolution: "处理结果",
    uphold: "维持：原决定成立",
    overturn: "推翻：原决定有误",
    note: "备注",
    note_help: "你的核查结果；客户会看到。",
    resolve: "处理申诉",
    resolved_at: "处理时间",
    resolution_note: "处理备注",
    resolved_notice: "申诉已处理。",
    outcome_approved: "已批准",
    outcome_rejected: "已拒绝",
    outcome_review: "待审核",
    policy_title: "高峰时段",
    in_force: "当前生效",
    forced: "由运营人员强制",
    by_calendar: "按日历",
    why: "原因",
    since: "开始于",
    ends_at: "结束于",
    profile: "阈值配置",
    windows_title: "已配置的时段",
    col_window: "时段",
    col_when: "时间",
    daily: "每日",
    force: "强制开启",
    follow_calendar: "恢复按日历",
    force_normal: "强制关闭：使用常规策略",
    confirm_title: "确认更改",
    col_setting: "设置项",
    confirm_from: "当前生效",
    confirm_to: "更改后",
    confirm_effect: "本网关实例（不含集群中的其他实例）从下一个请求起使用该时段的限额和阈值配置，直到解除强制。超过该时段收紧限额的提款将以 PEAK_WINDOW_TIGHTENED 拒绝。",
    confirm_calendar_effect: "在本网关实例上解除强制的时段：从下一个请求起重新按日历决定策略。",
    confirm: "确认",
    cancel: "取消",
    user_quota: "每用户配额",
    per_minute: "次/分钟",
    burst: "突发",
    admission: "准入（并发 / 队列）",
    forced_notice: "策略已更改。",
    customers_title: "客户",
    user_id: "用户 ID",
    user_help: "例如 u-demo-a。",
    look_up: "查询",
    user_not_found: "没有该用户。",
    credit_line: "当前额度",
    line_limit: "额度",
    used: "已用",
    available: "可用",
    drawable_now: "现在可提",
    constraints: "使可提金额低于可用额度的规则",
    user_appeals: "申诉",
    trail_title: "本实例的近期答复",
    trail_help: "本网关实例近期对该用户作出的决定及 429/503 拒绝，最新在前。保存在内存中、有上限、按实例保存：集群中其他实例各自保存，重启后清空。在读取请求体之前被削减的请求不含用户，不在此列。",
    trail_empty: "本实例近期没有对该用户的答复。",
    trail_off: "每用户记录已关闭（console.trail_users = 0）。",
    col_answer: "答复",
    col_detail: "详情",
    refused: "已拒绝",
    thresholds_title: "风控阈值",
    live_version: "生效版本",
    document: "生效的阈值文档",
    history_title: "历史版本",
    history_help: "通过管理接口发布或由影子候选提升的版本，最新在前，取自运营变更审计记录（GET /admin/audit）：操作人、时间及每个变更的字段。",
    history_empty: "自审计记录开始以来没有发布过新版本：生效版本是网关启动时的版本。",
    history_published: "发布",
    history_promoted: "由影子候选提升",
    history_no_field: "除版本号外没有字段变更。",
    history_more: "其他变更字段",
    history_cut: "仅检索了最近 5,000 条运营变更；更早的版本未列出。",
    history_dropped: "内存存储已丢弃最早的审计记录；更早的版本未列出。",
    history_unavailable: "无法读取审计记录（存储未响应）；不显示历史。",
    col_version: "版本",
    col_by: "操作人",
    col_difference: "变更",
    not_found: "未找到。",
    unavailable: "存储未响应；未做任何更改。请重试。",
    back: "返回",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, v.parse().unwrap());
        h
    }

    #[test]
    fn the_query_wins_then_the_cookie_then_accept_language() {
        let zh = accept("zh-CN,zh;q=0.9,en;q=0.8");
        assert_eq!(Lang::negotiate(None, None, &zh), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("en"), Some("zh"), &zh), Lang::En);
        assert_eq!(Lang::negotiate(None, Some("en"), &zh), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr"), None, &zh), Lang::Zh);
        assert_eq!(
            Lang::negotiate(None, None, &accept("fr, en-GB;q=0.5")),
            Lang::En
        );
        assert_eq!(Lang::negotiate(None, None, &accept("zh;q=0, en")), Lang::En);
        assert_eq!(Lang::negotiate(None, None, &HeaderMap::new()), Lang::En);
    }
}
