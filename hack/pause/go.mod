// The pod sandbox process of the lab's pause image; see main.go and hack/build-images.sh.
module wiremesh.dev/hack/pause

go 1.24
