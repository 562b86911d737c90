//! The harness of test binaries whose tests need something outside the
//! repository (node, python3, a PostgreSQL server): a test that finds its
//! tool missing is reported as ignored, with the reason, in cargo's summary,
//! instead of passing without having run.
//!
//! Where the environment promises the tool (`CI=true`, as `.ci/run` runs),
//! a missing tool fails the test instead.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// How a test ended, when it did not fail.
pub enum Ran {
    /// It ran to the end.
    Done,
    /// It could not run here; the reason names what is missing.
    Skipped(String),
}

/// The test ran to the end.
pub const DONE: Ran = Ran::Done;

/// Whether missing tools fail tests instead of skipping them.
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Ends the test as skipped because of `reason` (or fails it where the
/// environment promises every tool).
pub fn skip(reason: impl Into<String>) -> Ran {
    let reason = reason.into();
    if required() {
        panic!("{reason}, and CI=true requires it");
    }
    Ran::Skipped(reason)
}

/// An async test function of this harness.
pub type TestFn = fn() -> Pin<Box<dyn Future<Output = Ran> + Send>>;

/// One test: its name and its function, run on a runtime of its own.
pub struct Test {
    name: String,
    run: TestFn,
    worker_threads: Option<usize>,
    ignored: bool,
}

impl Test {
    /// A test run on a single-threaded runtime, as `#[tokio::test]` does.
    pub fn new(name: &'static str, run: TestFn) -> Self {
        Test {
            name: name.to_string(),
            run,
            worker_threads: None,
            ignored: false,
        }
    }

    /// Lists the test as ignored unless `run` holds, as `#[ignore]` would
    /// (`--ignored` runs it anyway): for the long tests.
    pub fn ignored_unless(mut self, run: bool) -> Self {
        self.ignored = !run;
        self
    }

    /// The test named as in module `module` (`module::name`), so that a
    /// filter on a file's name runs that file's tests.
    pub fn in_module(mut self, module: &str) -> Self {
        self.name = format!("{module}::{}", self.name);
        self
    }

    /// The same test on a multi-threaded runtime with `n` workers.
    pub fn multi_thread(mut self, n: usize) -> Self {
        self.worker_threads = Some(n);
        self
    }

    fn into_trial(self) -> Trial {
        let Test {
            name,
            run,
            worker_threads,
            ignored,
        } = self;
        Trial::ignorable_test(name, move || {
            let runtime = match worker_threads {
                None => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                Some(n) => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .enable_all()
                    .build(),
            }
            .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
            match runtime.block_on(run()) {
                Ran::Done => Ok(Completion::Completed),
                Ran::Skipped(reason) => Ok(Completion::ignored_with(reason)),
            }
        })
        .with_ignored_flag(ignored)
    }
}

/// Runs the tests as cargo's own harness would (same arguments and output)
/// and exits with its status.
pub fn run(tests: Vec<Test>) -> ! {
    let args = Arguments::from_args();
    let trials = tests.into_iter().map(Test::into_trial).collect();
    libtest_mimic::run(&args, trials).exit()
}

/// The [`Test`]s of async functions returning [`Ran`], named as the functions.
#[macro_export]
macro_rules! tests {
    ($($name:ident),+ $(,)?) => {
        vec![$($crate::harness::Test::new(stringify!($name), || Box::pin($name()))),+]
    };
}
