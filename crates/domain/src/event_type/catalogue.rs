//! The event types of the Smart AI Hub platform, with the example envelopes
//! of the webhook developer guide.
//!
//! The guide is the contract with receivers: descriptions, emitting services
//! and examples of its twelve types are copied from it verbatim. The four
//! further auth-service types and `webhook.disabled` follow the same shape.

use super::EventTypeInfo;

/// Every known event type, grouped by category in the guide's order.
pub(super) static CATALOGUE: [EventTypeInfo; 17] = [
    EventTypeInfo {
        name: "user.created",
        category: "user",
        description: "Triggered when a new user registers.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.created",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "createdAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.updated",
        category: "user",
        description: "Triggered when a user's profile is updated.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.updated",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "changes": {
      "firstName": "John",
      "lastName": "Doe"
    },
    "updatedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.login",
        category: "user",
        description: "Triggered when a user logs in.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.login",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "loginTime": "2025-01-01T00:00:00.000Z",
    "ipAddress": "192.168.1.1",
    "userAgent": "Mozilla/5.0..."
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.logout",
        category: "user",
        description: "Triggered when a user logs out.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.logout",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "logoutTime": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.verified",
        category: "user",
        description: "Triggered when a user verifies their email address.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.verified",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "verifiedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.password_changed",
        category: "user",
        description: "Triggered when a user changes or resets their password.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.password_changed",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "changedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.profile_updated",
        category: "user",
        description: "Triggered when a user updates their profile details.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.profile_updated",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "changes": {
      "displayName": "John Doe",
      "avatarUrl": "https://smartaihub.com/avatars/user_id.png"
    },
    "updatedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "user.roles_assigned",
        category: "user",
        description: "Triggered when roles are assigned to a user.",
        service: "auth-service",
        example: r#"{
  "id": "event_id",
  "eventType": "user.roles_assigned",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "email": "user@example.com",
    "roles": [
      "user",
      "admin"
    ],
    "assignedBy": "admin_user_id",
    "assignedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "auth-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "credit.depleted",
        category: "credit",
        description: "Triggered when a user's credits reach 0.",
        service: "core-service",
        example: r#"{
  "id": "event_id",
  "eventType": "credit.depleted",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "balance": 0,
    "previousBalance": 5,
    "transactionId": "transaction_id",
    "transactionType": "usage",
    "amount": -5,
    "description": "Service usage: gpt-4",
    "depletedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "core-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "credit.low",
        category: "credit",
        description: "Triggered when a user's credits fall below the threshold (default: 10).",
        service: "core-service",
        example: r#"{
  "id": "event_id",
  "eventType": "credit.low",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "balance": 8,
    "threshold": 10,
    "lowCreditAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "core-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "credit.purchased",
        category: "credit",
        description: "Triggered when a user purchases credits.",
        service: "core-service",
        example: r#"{
  "id": "event_id",
  "eventType": "credit.purchased",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "amount": 100,
    "balance": 150,
    "previousBalance": 50,
    "transactionId": "transaction_id",
    "paymentMethod": "credit_card",
    "purchasedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "core-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "credit.refunded",
        category: "credit",
        description: "Triggered when credits are refunded.",
        service: "core-service",
        example: r#"{
  "id": "event_id",
  "eventType": "credit.refunded",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "amount": 25,
    "balance": 75,
    "previousBalance": 50,
    "transactionId": "transaction_id",
    "reason": "Service failure",
    "refundedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "core-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "credit.promo_redeemed",
        category: "credit",
        description: "Triggered when a user redeems a promo code.",
        service: "core-service",
        example: r#"{
  "id": "event_id",
  "eventType": "credit.promo_redeemed",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "promoCode": "WELCOME2025",
    "credits": 50,
    "balance": 100,
    "previousBalance": 50,
    "redeemedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "core-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "service.completed",
        category: "service",
        description: "Triggered when an AI service completes successfully.",
        service: "mcp-server",
        example: r#"{
  "id": "event_id",
  "eventType": "service.completed",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "requestId": "request_id",
    "service": "mcp",
    "model": "gpt-4",
    "tokens": 150,
    "credits": 5,
    "duration": 2500,
    "response": "Generated text response...",
    "completedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "mcp-server",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "service.failed",
        category: "service",
        description: "Triggered when an AI service fails.",
        service: "mcp-server",
        example: r#"{
  "id": "event_id",
  "eventType": "service.failed",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "requestId": "request_id",
    "service": "mcp",
    "model": "gpt-4",
    "errorCode": "EXECUTION_ERROR",
    "errorMessage": "Service temporarily unavailable",
    "duration": 1000,
    "failedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "mcp-server",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "service.started",
        category: "service",
        description: "Triggered when an AI service starts processing.",
        service: "mcp-server",
        example: r#"{
  "id": "event_id",
  "eventType": "service.started",
  "userId": "user_id",
  "data": {
    "userId": "user_id",
    "requestId": "request_id",
    "service": "mcp",
    "model": "gpt-4",
    "maxTokens": 1000,
    "startedAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "mcp-server",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
    EventTypeInfo {
        name: "webhook.disabled",
        category: "webhook",
        description: "Triggered when the webhook service automatically disables one of the user's webhooks after repeated delivery failures.",
        service: "webhook-service",
        example: r#"{
  "id": "event_id",
  "eventType": "webhook.disabled",
  "userId": "user_id",
  "data": {
    "webhookId": "webhook_id",
    "url": "https://smartaihub.com/webhooks/smartaihub",
    "reason": "Deliveries failed continuously for 5 days",
    "disabledAt": "2025-01-01T00:00:00.000Z"
  },
  "metadata": {
    "service": "webhook-service",
    "timestamp": "2025-01-01T00:00:00.000Z"
  }
}"#,
    },
];
