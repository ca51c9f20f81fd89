//! A seed fixes the model and the scores, whatever the number of threads.

use anomalyd_engine::{ForestParams, IsolationForest, Matrix, RandomStream};

use crate::data::odds;

fn fit_and_score(threads: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    fit_and_score_with(threads, seed, RandomStream::Anomalyd)
}

fn fit_and_score_with(threads: usize, seed: u64, random_stream: RandomStream) -> (Vec<u8>, Vec<f32>) {
    let data = odds("cardio");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let params = ForestParams { n_trees: 300, seed, random_stream, ..Default::default() };
        let model = IsolationForest::fit(&data.matrix, data.names.clone(), &params).unwrap();
        (model.to_bytes(), model.score_samples(&data.matrix).unwrap())
    })
}

#[test]
fn same_seed_gives_identical_bytes_and_scores_on_one_and_two_threads() {
    let (bytes1, scores1) = fit_and_score(1, 42);
    let (bytes2, scores2) = fit_and_score(2, 42);
    assert_eq!(bytes1, bytes2);
    assert_eq!(scores1, scores2);
    let (bytes_other, _) = fit_and_score(2, 43);
    assert_ne!(bytes1, bytes_other, "another seed gives another model");
}

#[test]
fn scikit_learn_stream_is_also_the_same_on_one_and_two_threads() {
    let one = fit_and_score_with(1, 42, RandomStream::ScikitLearn);
    assert_eq!(one, fit_and_score_with(2, 42, RandomStream::ScikitLearn));
    assert_ne!(one.0, fit_and_score(1, 42).0, "the two streams grow different forests");
}

#[test]
fn single_row_and_batch_scores_agree_exactly() {
    let data = odds("cardio");
    let model = IsolationForest::fit(&data.matrix, data.names.clone(), &ForestParams::default()).unwrap();
    let batch = model.score_samples(&data.matrix).unwrap();
    for i in (0..data.matrix.n_rows()).step_by(37) {
        assert_eq!(model.score_row(data.matrix.row(i)).unwrap(), batch[i], "row {i}");
        let (explained, _) = model.explain_row(data.matrix.row(i), 3).unwrap();
        assert_eq!(explained, batch[i], "row {i}");
    }
    // Small batches take other paths (row by row, padded lane groups): same bits.
    for n in [1, 3, 4, 5, 17, 33, 65] {
        let d = data.matrix.n_cols();
        let small = Matrix::new(data.matrix.as_slice()[..n * d].to_vec(), d, &[]).unwrap();
        assert_eq!(model.score_samples(&small).unwrap(), batch[..n], "batch of {n}");
    }
}
