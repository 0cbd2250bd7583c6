import MemwardenDetection
import Testing

/// The one median and percentile that detection, its score, rightsizing and the benches share.
struct QuantilesTests {
    @Test func medianOfAnOddCountIsTheMiddleValue() {
        #expect(Quantiles.median([5, 1, 3]) == 3)
    }

    @Test func medianOfAnEvenCountIsTheMeanOfTheMiddleTwo() {
        #expect(Quantiles.median([4, 1, 3, 2]) == 2.5)
    }

    @Test func noValuesHaveNoMedian() {
        #expect(Quantiles.median([]) == nil)
        #expect(Quantiles.percentile([], 0.9) == nil)
    }

    @Test func percentilesInterpolateBetweenRanksLikeNumpy() {
        // numpy.percentile([10, 20, 30, 40, 50], [0, 25, 90, 100]) = 10, 20, 46, 50
        let values: [Double] = [50, 10, 40, 20, 30]
        #expect(Quantiles.percentile(values, 0) == 10)
        #expect(Quantiles.percentile(values, 0.25) == 20)
        #expect(abs(Quantiles.percentile(values, 0.9)! - 46) < 1e-9)
        #expect(Quantiles.percentile(values, 1) == 50)
    }

    /// The detection score gives a missed leak an infinite delay: a median on a rank next to it
    /// must stay finite, and one between a finite and an infinite value is infinite, never NaN.
    @Test func infiniteValuesGiveNoNaN() {
        #expect(Quantiles.median([1, 2, .infinity]) == 2)
        #expect(Quantiles.median([1, .infinity]) == .infinity)
        #expect(Quantiles.median([.infinity, .infinity]) == .infinity)
    }
}
