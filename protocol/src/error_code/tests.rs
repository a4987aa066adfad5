use std::collections::HashSet;

use super::*;

#[test]
fn codes_are_unique_and_round_trip_through_from_str() {
    let mut seen = HashSet::new();
    for &code in ErrorCode::ALL {
        assert!(seen.insert(code.as_str()), "duplicate code {code}");
        assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        assert_eq!(code.to_string(), code.as_str());
    }
}

#[test]
fn codes_are_snake_case() {
    for &code in ErrorCode::ALL {
        let s = code.as_str();
        assert!(!s.is_empty());
        assert!(
            s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{s} is not snake_case"
        );
        assert!(!s.starts_with('_') && !s.ends_with('_'));
    }
}

/// `ALL` must list every variant: this match has no wildcard, so adding a variant without
/// listing it here fails to compile, and the count check catches a variant missing from `ALL`.
#[test]
fn all_is_exhaustive() {
    fn index(code: ErrorCode) -> usize {
        match code {
            ErrorCode::BadFrame => 0,
            ErrorCode::FrameTooLarge => 1,
            ErrorCode::BadRequest => 2,
            ErrorCode::UnsupportedVersion => 3,
            ErrorCode::InvalidImage => 4,
            ErrorCode::ImageTooLarge => 5,
            ErrorCode::UnknownItem => 6,
            ErrorCode::UnknownCategory => 7,
            ErrorCode::InvalidFilter => 8,
            ErrorCode::Unauthorized => 9,
            ErrorCode::Busy => 10,
            ErrorCode::Unavailable => 11,
            ErrorCode::Timeout => 12,
            ErrorCode::NotReady => 13,
            ErrorCode::Internal => 14,
            ErrorCode::UnknownQuery => 15,
            ErrorCode::Forbidden => 16,
            ErrorCode::RateLimited => 17,
        }
    }
    let indices: HashSet<usize> = ErrorCode::ALL.iter().map(|&c| index(c)).collect();
    assert_eq!(indices.len(), 18);
    assert_eq!(ErrorCode::ALL.len(), 18);
}

#[test]
fn required_codes_have_the_agreed_class_and_retryability() {
    let expected = [
        ("bad_frame", ErrorClass::BadRequest, false),
        ("frame_too_large", ErrorClass::BadRequest, false),
        ("bad_request", ErrorClass::BadRequest, false),
        ("unsupported_version", ErrorClass::BadRequest, false),
        ("invalid_image", ErrorClass::BadRequest, false),
        ("image_too_large", ErrorClass::BadRequest, false),
        ("unknown_item", ErrorClass::NotFound, false),
        ("unknown_category", ErrorClass::NotFound, false),
        ("invalid_filter", ErrorClass::BadRequest, false),
        ("unauthorized", ErrorClass::Unauthorized, false),
        ("busy", ErrorClass::Busy, true),
        ("unavailable", ErrorClass::Unavailable, true),
        ("timeout", ErrorClass::Unavailable, true),
        ("not_ready", ErrorClass::Unavailable, true),
        ("internal", ErrorClass::Internal, false),
        ("unknown_query", ErrorClass::NotFound, false),
    ];
    for (s, class, retryable) in expected {
        let code: ErrorCode = s.parse().expect("code in table");
        assert_eq!(code.class(), class, "{s}");
        assert_eq!(code.retryable(), retryable, "{s}");
    }
}

#[test]
fn unknown_codes_are_rejected_by_from_str_and_lossy_on_the_wire() {
    assert_eq!(
        "quota_exceeded".parse::<ErrorCode>(),
        Err(UnknownErrorCode("quota_exceeded".into()))
    );
    assert_eq!(
        ErrorCode::parse_lossy("quota_exceeded"),
        ErrorCode::Internal
    );

    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec("quota_exceeded", config).expect("encode");
    let (code, _): (ErrorCode, usize) =
        bincode::serde::borrow_decode_from_slice(&bytes, config).expect("decode");
    assert_eq!(code, ErrorCode::Internal);
}
