// A tiny pod for the real node's tests, built statically into a FROM-scratch image: it serves
// HTTP on :8080 (logging each request, for `kubectl logs`), answers `probe id` (for `kubectl
// exec`), and on /whoami asks the API server who its ServiceAccount token says it is, through
// https://kubernetes.default.svc with the mounted CA (hostname verified).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "id" {
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		return
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("request %s %s", r.Method, r.URL.Path)
		fmt.Fprintf(w, "hello from %s\n", os.Getenv("HOSTNAME"))
	})
	http.HandleFunc("/whoami", whoami)
	log.Println("listening on :8080")
	log.Fatal(http.ListenAndServe(":8080", nil))
}

func whoami(w http.ResponseWriter, _ *http.Request) {
	token, err := os.ReadFile(serviceAccount + "/token")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ca, err := os.ReadFile(serviceAccount + "/ca.crt")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	request, _ := http.NewRequest(http.MethodPost,
		"https://kubernetes.default.svc/apis/authentication.k8s.io/v1/selfsubjectreviews",
		strings.NewReader(review))
	request.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	request.Header.Set("Content-Type", "application/json")
	reply, err := client.Do(request)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer reply.Body.Close()
	w.WriteHeader(reply.StatusCode)
	io.Copy(w, reply.Body)
}
